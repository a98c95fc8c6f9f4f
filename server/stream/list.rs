//! The list of running streams: the configured ones plus those added at run time over JSON-RPC
//! (`Stream.AddStream`, docs/JSONRPC.md §4.2). Readers get cheap snapshots (a `Stream` is
//! an `Arc`), so no lock is held while a caller works with one; the first stream is the
//! default stream.

use std::sync::RwLock;

use tokio_util::sync::CancellationToken;

use crate::stream::Stream;

#[derive(Debug)]
struct Entry {
    stream: Stream,
    /// Stops this stream's source task (and with it its encoder thread).
    cancel: CancellationToken,
}

/// Why a stream was not removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removal {
    /// No stream has the name.
    NotFound,
    /// It is the only stream.
    Last,
}

/// Every running stream, in configuration order, then in order of addition.
#[derive(Debug, Default)]
pub(crate) struct StreamList {
    list: RwLock<Vec<Entry>>,
}

impl StreamList {
    /// StreamList already started, each with the token that stops it.
    pub(crate) fn new(streams: Vec<(Stream, CancellationToken)>) -> Self {
        Self {
            list: RwLock::new(
                streams
                    .into_iter()
                    .map(|(stream, cancel)| Entry { stream, cancel })
                    .collect(),
            ),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Entry>> {
        // Nothing panics while holding the lock; a poisoned list is still a valid list.
        self.list
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Entry>> {
        self.list
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A snapshot of every stream.
    pub(crate) fn iter(&self) -> std::vec::IntoIter<Stream> {
        self.read()
            .iter()
            .map(|e| e.stream.clone())
            .collect::<Vec<_>>()
            .into_iter()
    }

    /// The default stream: the first that clients can play (`codec=null` streams only feed
    /// meta streams).
    pub(crate) fn first(&self) -> Option<Stream> {
        self.read()
            .iter()
            .find(|e| e.stream.playable())
            .map(|e| e.stream.clone())
    }

    /// The stream with this id.
    pub(crate) fn get(&self, name: &str) -> Option<Stream> {
        self.read()
            .iter()
            .find(|e| e.stream.name() == name)
            .map(|e| e.stream.clone())
    }

    /// The id of every stream a group can play (not the `codec=null` ones).
    pub(crate) fn names(&self) -> Vec<String> {
        self.read()
            .iter()
            .filter(|e| e.stream.playable())
            .map(|e| e.stream.name().to_owned())
            .collect()
    }

    /// Adds a started stream; gives it back when its name is taken.
    pub(crate) fn insert(
        &self,
        stream: Stream,
        cancel: CancellationToken,
    ) -> Result<(), (Stream, CancellationToken)> {
        let mut list = self.write();
        if list.iter().any(|e| e.stream.name() == stream.name()) {
            return Err((stream, cancel));
        }
        list.push(Entry { stream, cancel });
        Ok(())
    }

    /// Removes a stream and stops its source, unless it is the last one (checked under the
    /// same lock, so two removals at once cannot empty the list).
    pub(crate) fn remove(&self, name: &str) -> Result<Stream, Removal> {
        let entry = {
            let mut list = self.write();
            let index = list
                .iter()
                .position(|e| e.stream.name() == name)
                .ok_or(Removal::NotFound)?;
            // Clients need a stream to play: the last playable one stays.
            let playable = list.iter().filter(|e| e.stream.playable()).count();
            if list[index].stream.playable() && playable <= 1 {
                return Err(Removal::Last);
            }
            list.remove(index)
        };
        entry.cancel.cancel();
        Ok(entry.stream)
    }
}

impl IntoIterator for &StreamList {
    type Item = Stream;
    type IntoIter = std::vec::IntoIter<Stream>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}
