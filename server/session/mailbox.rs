//! A session's queue of control messages for its writer ([`Outbound`]): bounded, one
//! consumer, and small, because every connected client has one.
//!
//! A tokio `mpsc` channel would do the same job but costs about 1.3 KiB per session up
//! front (a 32-slot block and a cache-padded channel), more than the rest of an idle
//! session's control state together; this queue lives inside the session's shared info and
//! allocates only for the messages it holds (docs/PERFORMANCE.md).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

use tokio::sync::Notify;

use super::Outbound;

/// Why a message was not queued.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The queue holds its capacity: the client is not reading. The message comes back.
    Full(Outbound),
    /// The session has ended.
    Closed,
}

#[derive(Debug, Default)]
struct Queue {
    messages: VecDeque<Outbound>,
    closed: bool,
    /// The writer, parked in `recv` on an empty queue. Kept under the same lock as the
    /// queue, so a message and its wake-up can never miss each other.
    writer: Option<Waker>,
}

/// See the module doc. One task receives (the session's writer); the lock is never held
/// across an await.
#[derive(Debug)]
pub(crate) struct Mailbox {
    queue: Mutex<Queue>,
    capacity: usize,
    /// Wakes a sender waiting for room: the writer took a message, or the session closed.
    room: Notify,
}

impl Mailbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            capacity,
            room: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic elsewhere cannot leave a VecDeque half-updated; keep serving.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `message` unless the mailbox is full or closed.
    pub(crate) fn try_send(&self, message: Outbound) -> Result<(), Refused> {
        let writer = {
            let mut queue = self.lock();
            if queue.closed {
                return Err(Refused::Closed);
            }
            if queue.messages.len() >= self.capacity {
                return Err(Refused::Full(message));
            }
            queue.messages.push_back(message);
            queue.writer.take()
        };
        if let Some(writer) = writer {
            writer.wake();
        }
        Ok(())
    }

    /// Queues `message`, waiting for room while the writer catches up; refuses only once
    /// the mailbox is closed.
    pub(crate) async fn send(&self, mut message: Outbound) -> Result<(), Refused> {
        loop {
            // Registered before trying, so a take between the try and the await still wakes us.
            let room = self.room.notified();
            match self.try_send(message) {
                Err(Refused::Full(back)) => message = back,
                other => return other,
            }
            room.await;
        }
    }

    /// The next message; waits while the mailbox is empty. Cancel-safe: a message is only
    /// taken when this returns. Cheap to poll and drop, as the writer's `select!` does on
    /// every turn: one uncontended lock, no waiter list.
    pub(crate) async fn recv(&self) -> Outbound {
        poll_fn(|cx| {
            let mut queue = self.lock();
            match queue.messages.pop_front() {
                Some(message) => {
                    drop(queue);
                    self.room.notify_one();
                    Poll::Ready(message)
                }
                None => {
                    if !queue
                        .writer
                        .as_ref()
                        .is_some_and(|w| w.will_wake(cx.waker()))
                    {
                        queue.writer = Some(cx.waker().clone());
                    }
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Messages waiting.
    pub(crate) fn len(&self) -> usize {
        self.lock().messages.len()
    }

    /// Refuses every later message and drops the queued ones (the session ended).
    pub(crate) fn close(&self) {
        let dropped = {
            let mut queue = self.lock();
            queue.closed = true;
            std::mem::take(&mut queue.messages)
        };
        drop(dropped);
        self.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::protocol::Tv;

    fn time_reply(request_id: u16) -> Outbound {
        Outbound::TimeReply {
            request_id,
            latency: Tv::default(),
        }
    }

    fn request_id(message: &Outbound) -> u16 {
        match message {
            Outbound::TimeReply { request_id, .. } => *request_id,
            other => panic!("unexpected message {other:?}"),
        }
    }

    #[tokio::test]
    async fn delivers_in_order_and_refuses_when_full() {
        let mailbox = Mailbox::new(2);
        mailbox.try_send(time_reply(1)).expect("room for the first");
        mailbox
            .try_send(time_reply(2))
            .expect("room for the second");
        assert!(matches!(
            mailbox.try_send(time_reply(3)),
            Err(Refused::Full(_))
        ));
        assert_eq!(mailbox.len(), 2);
        assert_eq!(request_id(&mailbox.recv().await), 1);
        assert_eq!(request_id(&mailbox.recv().await), 2);
        assert_eq!(mailbox.len(), 0);
    }

    #[tokio::test]
    async fn recv_waits_for_a_message() {
        let mailbox = Arc::new(Mailbox::new(4));
        let receiver = tokio::spawn({
            let mailbox = mailbox.clone();
            async move { request_id(&mailbox.recv().await) }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !receiver.is_finished(),
            "recv returned from an empty mailbox"
        );
        mailbox.try_send(time_reply(7)).expect("room");
        assert_eq!(receiver.await.expect("receiver task"), 7);
    }

    #[tokio::test]
    async fn a_dropped_recv_loses_nothing() {
        let mailbox = Mailbox::new(4);
        // Poll recv once on an empty mailbox, then drop it, as select! does.
        let pending = tokio::time::timeout(Duration::from_millis(10), mailbox.recv()).await;
        assert!(pending.is_err());
        mailbox.try_send(time_reply(9)).expect("room");
        let got = tokio::time::timeout(Duration::from_secs(1), mailbox.recv())
            .await
            .expect("the queued message arrives");
        assert_eq!(request_id(&got), 9);
    }

    /// A full one-slot mailbox holding request 1, and a task sending request 2 into it.
    async fn full_with_a_waiting_sender(
    ) -> (Arc<Mailbox>, tokio::task::JoinHandle<Result<(), Refused>>) {
        let mailbox = Arc::new(Mailbox::new(1));
        mailbox.try_send(time_reply(1)).expect("room");
        let sender = tokio::spawn({
            let mailbox = mailbox.clone();
            async move { mailbox.send(time_reply(2)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        (mailbox, sender)
    }

    #[tokio::test]
    async fn send_waits_for_room_then_delivers() {
        let (mailbox, sender) = full_with_a_waiting_sender().await;
        assert!(!sender.is_finished(), "send did not wait for room");
        assert_eq!(request_id(&mailbox.recv().await), 1);
        assert!(sender.await.expect("sender task").is_ok());
        assert_eq!(request_id(&mailbox.recv().await), 2);
    }

    #[tokio::test]
    async fn close_refuses_and_releases_waiting_senders() {
        let (mailbox, sender) = full_with_a_waiting_sender().await;
        mailbox.close();
        let result = tokio::time::timeout(Duration::from_secs(1), sender)
            .await
            .expect("the waiting sender is released")
            .expect("sender task");
        assert!(matches!(result, Err(Refused::Closed)));
        assert!(matches!(
            mailbox.try_send(time_reply(3)),
            Err(Refused::Closed)
        ));
        assert_eq!(mailbox.len(), 0);
    }
}
