//! Buffers for received datagrams, reused: the media reader copies each
//! datagram it routes into one, the room task gives it back once the room
//! has taken the datagram in, so receiving allocates nothing per datagram
//! once the pool holds as many buffers as are in flight.
//!
//! One pool for the server, shared by the reader and every room task
//! without a lock (a bounded lock-free queue). It keeps at most
//! [`POOLED_BUFFERS`] buffers of at most [`POOLED_CAPACITY`] bytes; larger
//! ones (a datagram past the usual MTU) are freed, and the last room to
//! close empties the pool, so memory goes back when the calls end.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

/// Most buffers kept: more than the datagrams in flight at a time (the
/// reader's batch and the rooms' queues being drained).
const POOLED_BUFFERS: usize = 256;
/// Capacity of a new buffer, and the largest kept: an Ethernet MTU's
/// datagram.
const POOLED_CAPACITY: usize = 1500;

/// Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct ReceiveBuffers {
    pool: Arc<ArrayQueue<Vec<u8>>>,
}

impl ReceiveBuffers {
    pub fn new() -> Self {
        ReceiveBuffers {
            pool: Arc::new(ArrayQueue::new(POOLED_BUFFERS)),
        }
    }

    /// `contents` in a buffer of the pool (a new one when it is empty).
    pub fn copy_of(&self, contents: &[u8]) -> Vec<u8> {
        let mut buffer = self
            .pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(POOLED_CAPACITY.max(contents.len())));
        buffer.clear();
        buffer.extend_from_slice(contents);
        buffer
    }

    /// Takes `buffer` back for a later datagram, unless it is larger than
    /// the pool keeps or the pool is full.
    pub fn give_back(&self, buffer: Vec<u8>) {
        if buffer.capacity() <= POOLED_CAPACITY {
            // A full pool drops the buffer here.
            let _ = self.pool.push(buffer);
        }
    }

    /// Frees every pooled buffer.
    pub fn clear(&self) {
        while self.pool.pop().is_some() {}
    }

    /// Buffers in the pool now.
    #[cfg(test)]
    fn pooled(&self) -> usize {
        self.pool.len()
    }
}

impl Default for ReceiveBuffers {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_the_next_one_taken() {
        let buffers = ReceiveBuffers::new();
        let first = buffers.copy_of(b"first datagram");
        assert_eq!(first, b"first datagram");
        let address = first.as_ptr();
        buffers.give_back(first);
        assert_eq!(buffers.pooled(), 1);
        let second = buffers.copy_of(b"second");
        assert_eq!(second, b"second", "the old contents are gone");
        assert_eq!(second.as_ptr(), address, "the same allocation, reused");
        assert_eq!(buffers.pooled(), 0);
    }

    #[test]
    fn an_oversized_buffer_is_freed_and_a_full_pool_keeps_its_size() {
        let buffers = ReceiveBuffers::new();
        let jumbo = buffers.copy_of(&[7; POOLED_CAPACITY + 1]);
        assert_eq!(jumbo.len(), POOLED_CAPACITY + 1);
        buffers.give_back(jumbo);
        assert_eq!(buffers.pooled(), 0);

        for _ in 0..POOLED_BUFFERS + 10 {
            buffers.give_back(Vec::with_capacity(100));
        }
        assert_eq!(buffers.pooled(), POOLED_BUFFERS);
        buffers.clear();
        assert_eq!(buffers.pooled(), 0);
    }
}
