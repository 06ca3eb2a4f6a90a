//! One or more UDP datagrams to one destination, back to back in one
//! buffer: what [`crate::RoomOutput::Transmit`] carries.
//!
//! A subscriber's packets of one pass (a video frame, its audio) are
//! sealed straight into one buffer and handed to the owner as one output,
//! instead of an allocation, a copy and an output per datagram. The owner
//! sends them in order (its send batch makes UDP GSO sends of them).

use std::sync::{Arc, Mutex};

use smallvec::{smallvec, SmallVec};

/// Datagrams in send order; never holds an empty one.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Datagrams {
    bytes: Vec<u8>,
    /// Each datagram's length, in order: a pass's few (a frame, its audio)
    /// inline, no allocation per subscriber per pass for them.
    sizes: SmallVec<[u16; INLINE_SIZES]>,
}

/// Datagram lengths kept without an allocation.
const INLINE_SIZES: usize = 8;

/// Most bytes one datagram may have (a UDP payload's limit).
pub const MAX_DATAGRAM_LEN: usize = u16::MAX as usize;

/// Spare buffers kept at most (a pass of a large room takes more and
/// allocates the rest).
pub const SPARE_BUFFERS: usize = 256;
/// Smallest buffer kept as a spare: a pass's sealed packets need at least
/// this much (a single small datagram's buffer, str0m's RTCP say, is freed).
pub const SPARE_BUFFER_MIN_BYTES: usize = 1024;
/// Largest buffer kept as a spare: a frame's step or two; a keyframe's
/// grown buffer is freed after its send instead of being held.
pub const SPARE_BUFFER_MAX_BYTES: usize = 16 * 1024;

/// Datagrams' room reserved whenever the buffer is full: a video frame's
/// packets to one subscriber usually fit in one step, and a keyframe's
/// many grow it a step at a time, never to twice its need (a keyframe
/// pass holds one such buffer per subscriber).
const GROWTH_DATAGRAMS: usize = 6;

impl Datagrams {
    /// No datagrams.
    pub fn new() -> Datagrams {
        Datagrams::default()
    }

    /// One datagram (empty or oversized contents make none).
    pub fn one(contents: Vec<u8>) -> Datagrams {
        match u16::try_from(contents.len()) {
            Ok(size) if size > 0 => Datagrams {
                bytes: contents,
                sizes: smallvec![size],
            },
            _ => Datagrams::default(),
        }
    }

    /// Appends a datagram that `write` puts at the end of the buffer it is
    /// given (which it may only append to); `write` returns false when it
    /// could not, and whatever it appended is removed. Returns whether a
    /// datagram was added. `max_len` is the most `write` appends (more
    /// is kept too, at the cost of a copy).
    pub fn push_with(&mut self, max_len: usize, write: impl FnOnce(&mut Vec<u8>) -> bool) -> bool {
        if self.bytes.capacity() - self.bytes.len() < max_len {
            self.bytes.reserve_exact(max_len * GROWTH_DATAGRAMS);
        }
        if self.sizes.capacity() == self.sizes.len() {
            self.sizes.reserve_exact(GROWTH_DATAGRAMS);
        }
        let start = self.bytes.len();
        let written = write(&mut self.bytes);
        let size = self.bytes.len().saturating_sub(start);
        match u16::try_from(size) {
            Ok(size) if written && size > 0 => {
                self.sizes.push(size);
                true
            }
            _ => {
                self.bytes.truncate(start);
                false
            }
        }
    }

    /// Appends a copy of `contents` as one datagram (false, and nothing
    /// added, when it is empty or oversized).
    pub fn push(&mut self, contents: &[u8]) -> bool {
        self.push_with(contents.len(), |buffer| {
            buffer.extend_from_slice(contents);
            true
        })
    }

    /// How many datagrams.
    pub fn len(&self) -> usize {
        self.sizes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }

    /// All datagrams' bytes.
    pub fn total_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// The datagrams in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut rest = self.bytes.as_slice();
        self.sizes.iter().map(move |&size| {
            let (datagram, tail) = rest.split_at(usize::from(size));
            rest = tail;
            datagram
        })
    }

    /// Writes into a spare buffer from `spare` when this has none yet (it
    /// was taken for its last send): no allocation per subscriber per pass
    /// once the owner gives sent buffers back.
    pub fn use_spare_buffer(&mut self, spare: &mut LocalSpares) {
        if self.bytes.capacity() == 0 {
            if let Some(buffer) = spare.take() {
                self.bytes = buffer;
            }
        }
    }

    /// Removes every datagram, keeping the buffers.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.sizes.clear();
    }

    /// The buffer with the datagrams back to back, and their lengths in
    /// order: for an owner that sends from the buffer as it is.
    pub fn into_parts(self) -> (Vec<u8>, impl Iterator<Item = usize>) {
        (self.bytes, self.sizes.into_iter().map(usize::from))
    }

    /// The datagrams, leaving this empty (and without buffers).
    pub fn take(&mut self) -> Datagrams {
        std::mem::take(self)
    }

    /// Bytes the buffer holds without growing (what its tests check).
    #[cfg(test)]
    fn capacity_bytes(&self) -> usize {
        self.bytes.capacity()
    }
}

/// Buffers of datagrams already sent, emptied, for the next ones: the
/// set the server shares among its rooms, so rooms driven one after
/// another reuse the same few buffers (one set per room would hold a
/// pass's worth in each). Bounded by [`SPARE_BUFFERS`] and
/// [`SPARE_BUFFER_MIN_BYTES`]..=[`SPARE_BUFFER_MAX_BYTES`]; a clone is a
/// handle on the same buffers. A room reaches it through its
/// [`LocalSpares`], a lock per batch of buffers, not per buffer.
#[derive(Debug, Default, Clone)]
pub struct SpareBuffers {
    buffers: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// Spares a room takes from the shared set at once when it has none.
const REFILL_SPARES: usize = 16;

/// Whether a buffer of `capacity` bytes is kept as a spare.
fn worth_keeping(capacity: usize) -> bool {
    (SPARE_BUFFER_MIN_BYTES..=SPARE_BUFFER_MAX_BYTES).contains(&capacity)
}

impl SpareBuffers {
    pub fn new() -> SpareBuffers {
        SpareBuffers::default()
    }

    /// Moves `from`'s buffers into the set (one lock); those beyond its
    /// bound are freed.
    fn give_all(&self, from: &mut Vec<Vec<u8>>) {
        if from.is_empty() {
            return;
        }
        if let Ok(mut buffers) = self.buffers.lock() {
            let room = SPARE_BUFFERS.saturating_sub(buffers.len());
            let kept = from.len().min(room);
            buffers.extend(from.drain(..kept));
        }
        from.clear();
    }

    /// Moves up to `count` buffers onto `into` (one lock).
    fn take_into(&self, into: &mut Vec<Vec<u8>>, count: usize) {
        if let Ok(mut buffers) = self.buffers.lock() {
            let from = buffers.len().saturating_sub(count);
            into.extend(buffers.drain(from..));
        }
    }

    /// Frees every spare (no room is left to take them).
    pub fn clear(&self) {
        if let Ok(mut buffers) = self.buffers.lock() {
            *buffers = Vec::new();
        }
    }

    /// How many buffers are kept.
    pub fn len(&self) -> usize {
        self.buffers.lock().map_or(0, |b| b.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One owner's spares in front of the shared [`SpareBuffers`]: buffers
/// given back wait here until [`LocalSpares::settle`] hands them over,
/// and a queue that needs one takes from here, refilled
/// `REFILL_SPARES` (16) at a time.
#[derive(Debug, Default)]
pub struct LocalSpares {
    shared: SpareBuffers,
    local: Vec<Vec<u8>>,
}

impl LocalSpares {
    pub fn new(shared: SpareBuffers) -> LocalSpares {
        LocalSpares {
            shared,
            local: Vec::new(),
        }
    }

    /// Keeps `buffer` (emptied) for later datagrams, unless its size is
    /// not worth holding idle or enough wait already; whether it was kept.
    pub fn give(&mut self, mut buffer: Vec<u8>) -> bool {
        if !worth_keeping(buffer.capacity()) || self.local.len() >= SPARE_BUFFERS {
            return false;
        }
        buffer.clear();
        self.local.push(buffer);
        true
    }

    /// Hands the buffers given back to the shared set (after a send, so
    /// that no owner holds a pass's worth while idle).
    pub fn settle(&mut self) {
        self.shared.give_all(&mut self.local);
    }

    fn take(&mut self) -> Option<Vec<u8>> {
        if self.local.is_empty() {
            self.shared.take_into(&mut self.local, REFILL_SPARES);
        }
        self.local.pop()
    }

    /// Buffers waiting here (not yet settled).
    pub fn len(&self) -> usize {
        self.local.len()
    }

    pub fn is_empty(&self) -> bool {
        self.local.is_empty()
    }
}

impl std::fmt::Debug for Datagrams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datagrams")
            .field("datagrams", &self.sizes.len())
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_datagrams_apart_and_in_order() {
        let mut datagrams = Datagrams::new();
        assert!(datagrams.push(&[1, 2, 3]));
        assert!(datagrams.push_with(2, |b| {
            b.extend_from_slice(&[4, 5]);
            true
        }));
        assert!(datagrams.push(&[6]));
        let all: Vec<&[u8]> = datagrams.iter().collect();
        assert_eq!(all, vec![&[1u8, 2, 3][..], &[4, 5][..], &[6][..]]);
        assert_eq!(datagrams.len(), 3);
        assert_eq!(datagrams.total_bytes(), 6);
        assert_eq!(datagrams.iter().next(), Some(&[1u8, 2, 3][..]));
    }

    #[test]
    fn a_failed_or_empty_write_adds_nothing() {
        let mut datagrams = Datagrams::one(vec![9, 9]);
        assert!(!datagrams.push_with(4, |b| {
            b.extend_from_slice(&[1, 2, 3]);
            false
        }));
        assert!(!datagrams.push_with(4, |_| true));
        assert!(!datagrams.push(&[]));
        assert!(!datagrams.push(&vec![0; MAX_DATAGRAM_LEN + 1]));
        assert!(datagrams.push(&vec![0; MAX_DATAGRAM_LEN]));
        assert_eq!(datagrams.len(), 2);
        assert_eq!(datagrams.total_bytes(), 2 + MAX_DATAGRAM_LEN);
        assert_eq!(datagrams.iter().next(), Some(&[9u8, 9][..]));
    }

    #[test]
    fn the_buffer_grows_by_steps_of_datagrams_not_by_doubling() {
        let mut datagrams = Datagrams::new();
        for _ in 0..GROWTH_DATAGRAMS {
            assert!(datagrams.push(&[1; 1000]));
        }
        assert_eq!(datagrams.capacity_bytes(), 1000 * GROWTH_DATAGRAMS);
        for _ in 0..GROWTH_DATAGRAMS * 4 {
            assert!(datagrams.push(&[1; 1000]));
        }
        // A keyframe's worth: at most one step more than it holds.
        assert!(datagrams.capacity_bytes() < datagrams.total_bytes() + 1000 * GROWTH_DATAGRAMS);
    }

    #[test]
    fn one_refuses_empty_and_oversized_contents() {
        assert!(Datagrams::one(Vec::new()).is_empty());
        assert!(Datagrams::one(vec![0; MAX_DATAGRAM_LEN + 1]).is_empty());
        assert_eq!(Datagrams::one(vec![7; 10]).len(), 1);
    }

    #[test]
    fn a_sent_buffer_given_back_is_written_into_again() {
        let mut spare = LocalSpares::default();
        let mut queue = Datagrams::new();
        assert!(queue.push(&[1; 1000]));
        assert!(queue.push(&[1; 1000]));
        let (buffer, _) = queue.take().into_parts();
        let address = buffer.as_ptr();
        assert!(spare.give(buffer));
        assert_eq!(spare.len(), 1);
        queue.use_spare_buffer(&mut spare);
        assert!(spare.is_empty());
        assert!(queue.is_empty());
        assert!(queue.push(&[2; 500]));
        // The same allocation, emptied: only the new datagram in it.
        let (buffer, sizes) = queue.take().into_parts();
        assert_eq!(buffer.as_ptr(), address);
        assert_eq!(buffer, vec![2; 500]);
        assert_eq!(sizes.collect::<Vec<_>>(), vec![500]);
    }

    #[test]
    fn settled_spares_reach_another_owner_of_the_shared_set() {
        let shared = SpareBuffers::new();
        let mut room = LocalSpares::new(shared.clone());
        let mut other_room = LocalSpares::new(shared.clone());
        let buffer = Vec::with_capacity(4096);
        let address = buffer.as_ptr();
        assert!(room.give(buffer));
        assert!(shared.is_empty(), "kept by its room until settled");
        room.settle();
        assert!(room.is_empty());
        assert_eq!(shared.len(), 1);
        let mut queue = Datagrams::new();
        queue.use_spare_buffer(&mut other_room);
        assert!(shared.is_empty());
        assert!(queue.push(&[3; 100]));
        assert_eq!(queue.take().into_parts().0.as_ptr(), address);
    }

    #[test]
    fn a_room_takes_spares_a_batch_at_a_time() {
        let shared = SpareBuffers::new();
        let mut giver = LocalSpares::new(shared.clone());
        for _ in 0..REFILL_SPARES + 4 {
            assert!(giver.give(Vec::with_capacity(2048)));
        }
        giver.settle();
        let mut room = LocalSpares::new(shared.clone());
        let mut queue = Datagrams::new();
        queue.use_spare_buffer(&mut room);
        // One taken, the rest of the batch waiting in the room.
        assert_eq!(room.len(), REFILL_SPARES - 1);
        assert_eq!(shared.len(), 4);
        room.settle();
        assert_eq!(shared.len(), REFILL_SPARES + 3);
    }

    #[test]
    fn a_queue_with_a_buffer_keeps_its_own() {
        let mut spare = LocalSpares::default();
        assert!(spare.give(Vec::with_capacity(SPARE_BUFFER_MIN_BYTES)));
        let mut queue = Datagrams::one(vec![7; 10]);
        queue.use_spare_buffer(&mut spare);
        assert_eq!(spare.len(), 1);
        assert_eq!(queue.iter().next(), Some(&[7u8; 10][..]));
    }

    #[test]
    fn spares_are_bounded_in_number_and_size() {
        let shared = SpareBuffers::new();
        let mut spare = LocalSpares::new(shared.clone());
        assert!(!spare.give(Vec::new()));
        assert!(!spare.give(Vec::with_capacity(SPARE_BUFFER_MIN_BYTES - 1)));
        assert!(!spare.give(Vec::with_capacity(SPARE_BUFFER_MAX_BYTES + 1)));
        for _ in 0..SPARE_BUFFERS {
            assert!(spare.give(Vec::with_capacity(SPARE_BUFFER_MAX_BYTES)));
        }
        assert!(!spare.give(Vec::with_capacity(SPARE_BUFFER_MIN_BYTES)));
        assert_eq!(spare.len(), SPARE_BUFFERS);
        spare.settle();
        assert_eq!(shared.len(), SPARE_BUFFERS);
        // The shared set is full: another owner's settled spares are freed.
        let mut other = LocalSpares::new(shared.clone());
        assert!(other.give(Vec::with_capacity(SPARE_BUFFER_MIN_BYTES)));
        other.settle();
        assert!(other.is_empty());
        assert_eq!(shared.len(), SPARE_BUFFERS);
        shared.clone().clear();
        assert!(shared.is_empty());
        // With none left, a queue allocates as before.
        let mut queue = Datagrams::new();
        queue.use_spare_buffer(&mut LocalSpares::default());
        assert!(queue.push(&[1; 10]));
    }

    #[test]
    fn take_leaves_it_empty() {
        let mut datagrams = Datagrams::one(vec![1]);
        let taken = datagrams.take();
        assert!(datagrams.is_empty());
        assert_eq!(datagrams.total_bytes(), 0);
        assert_eq!(taken.len(), 1);
        datagrams.clear();
        assert!(datagrams.is_empty());
        assert_eq!(datagrams.capacity_bytes(), 0);
        assert!(Datagrams::one(vec![1; 10]).capacity_bytes() >= 10);
    }
}
