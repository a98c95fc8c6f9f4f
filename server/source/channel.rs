//! Input handed over in memory (a meta stream's active input): blocks of PCM arriving on a
//! channel in real time, read like any other live source.

use std::io;

use tokio::sync::mpsc;

/// Reads the blocks another task sends, in order.
#[derive(Debug)]
pub(crate) struct ChannelReader {
    blocks: mpsc::Receiver<Vec<u8>>,
    current: Vec<u8>,
    offset: usize,
}

impl ChannelReader {
    pub(crate) fn new(blocks: mpsc::Receiver<Vec<u8>>) -> Self {
        Self {
            blocks,
            current: Vec::new(),
            offset: 0,
        }
    }

    /// What is left of the block being read (blocks still queued are not counted: the
    /// feeding task hands them over as they are due).
    pub(crate) fn pending_bytes(&self) -> usize {
        self.current.len().saturating_sub(self.offset)
    }

    /// Reads at least one byte, waiting as long as needed; never ends (a closed channel
    /// waits forever, like a silent source).
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.offset >= self.current.len() {
            match self.blocks.recv().await {
                Some(block) => {
                    self.current = block;
                    self.offset = 0;
                }
                None => std::future::pending::<()>().await,
            }
        }
        let n = buf.len().min(self.current.len() - self.offset);
        buf[..n].copy_from_slice(&self.current[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blocks_are_read_in_order_across_reads() {
        let (tx, rx) = mpsc::channel(4);
        let mut reader = ChannelReader::new(rx);
        tx.send(vec![1, 2, 3]).await.unwrap();
        tx.send(vec![4]).await.unwrap();
        let mut buf = [0u8; 2];
        let mut seen = Vec::new();
        while seen.len() < 4 {
            let n = reader.read(&mut buf).await.unwrap();
            seen.extend_from_slice(&buf[..n]);
        }
        assert_eq!(seen, [1, 2, 3, 4]);
    }
}
