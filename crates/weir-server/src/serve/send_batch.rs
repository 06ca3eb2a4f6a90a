//! The datagrams a room sends in one flush, arranged for the kernel.
//!
//! Sending one datagram per syscall costs ~3 µs on loopback, far more than
//! forwarding it. A video frame is several packets of the same size to
//! each subscriber, so the batch groups consecutive datagrams to one
//! destination into UDP GSO sends: one syscall carries up to
//! `max_segments` datagrams of one size (the last may be shorter, e.g. the
//! frame's tail or an audio packet). The room emits each subscriber's
//! datagrams back to back, so grouping consecutive ones finds the frames
//! without reordering anything; order is always kept.
//!
//! Sans-IO: [`SendBatch::arrange`] only computes the groups; the socket
//! ([`super::media_socket`]) sends them. A room's sealed datagrams come in
//! the buffers they were sealed into ([`SendBatch::push_datagrams`]) and
//! are sent from them, not copied; the batch's own buffer, for copies, is
//! reused between flushes.

use std::net::SocketAddr;
use std::ops::Range;

use smallvec::SmallVec;
use weir_sfu::Datagrams;

/// Most bytes one GSO send may carry (an IP datagram's limit, less the
/// IPv6 and UDP headers, rounded down).
pub const MAX_GSO_BYTES: usize = 65_000;
/// Runs kept without an allocation (a pass's video and audio groups to
/// many subscribers make a few).
const INLINE_RUNS: usize = 8;

/// A datagram waiting in the batch.
#[derive(Debug, Clone, Copy)]
struct Staged {
    destination: SocketAddr,
    buffer: BufferIndex,
    start: usize,
    len: usize,
}

/// Which buffer holds a datagram: the batch's own (copies) or the n-th
/// buffer it was handed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BufferIndex {
    Copies,
    Handed(usize),
}

/// Datagrams for one destination that go out in one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group<'a> {
    pub destination: SocketAddr,
    /// The datagrams back to back.
    pub contents: &'a [u8],
    /// The size of every datagram but the last (which may be shorter);
    /// `None` for a single datagram.
    pub segment_size: Option<usize>,
    pub datagrams: usize,
}

/// Consecutive groups (indices into [`SendBatch::groups`]) sent by one
/// `sendmmsg`, with the segment size given for each of its messages (none
/// when every group is a single datagram).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub groups: Range<usize>,
    pub segment_size: Option<usize>,
}

#[derive(Debug, Clone)]
struct GroupSpan {
    destination: SocketAddr,
    buffer: BufferIndex,
    bytes: Range<usize>,
    segment_size: usize,
    datagrams: usize,
}

#[derive(Debug, Default)]
pub struct SendBatch {
    /// When the oldest datagram this batch answers was read (a sender
    /// thread records the forwarding latency from it).
    pub oldest_input: Option<std::time::Instant>,
    staged: Vec<Staged>,
    staged_bytes: Vec<u8>,
    /// Buffers handed over whole, sent from as they are.
    handed: Vec<Vec<u8>>,
    /// Scratch for [`SendBatch::split_off`].
    spare_bytes: Vec<u8>,
    groups: Vec<GroupSpan>,
}

impl SendBatch {
    pub fn new() -> SendBatch {
        SendBatch::default()
    }

    /// Adds a datagram (copied into the batch).
    pub fn push(&mut self, destination: SocketAddr, contents: &[u8]) {
        let start = self.staged_bytes.len();
        self.staged_bytes.extend_from_slice(contents);
        self.staged.push(Staged {
            destination,
            buffer: BufferIndex::Copies,
            start,
            len: contents.len(),
        });
    }

    /// Adds datagrams to one destination, taking their buffer (no copy).
    pub fn push_datagrams(&mut self, destination: SocketAddr, datagrams: Datagrams) {
        if datagrams.is_empty() {
            return;
        }
        let buffer = BufferIndex::Handed(self.handed.len());
        let (bytes, sizes) = datagrams.into_parts();
        let mut start = 0;
        for len in sizes {
            self.staged.push(Staged {
                destination,
                buffer,
                start,
                len,
            });
            start += len;
        }
        self.handed.push(bytes);
    }

    fn bytes_of(&self, buffer: BufferIndex, range: Range<usize>) -> &[u8] {
        let bytes = match buffer {
            BufferIndex::Copies => &self.staged_bytes,
            BufferIndex::Handed(index) => match self.handed.get(index) {
                Some(bytes) => bytes,
                None => return &[],
            },
        };
        bytes.get(range).unwrap_or_default()
    }

    /// Datagrams staged since the last [`SendBatch::clear`].
    pub fn len(&self) -> usize {
        self.staged.len()
    }

    pub fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }

    /// Moves the datagrams whose destination `moves` picks into `into`
    /// (both keep push order).
    pub fn split_off(&mut self, mut moves: impl FnMut(SocketAddr) -> bool, into: &mut SendBatch) {
        let mut kept_bytes = std::mem::take(&mut self.spare_bytes);
        kept_bytes.clear();
        let mut kept = 0;
        for i in 0..self.staged.len() {
            let datagram = self.staged[i];
            let contents = self.bytes_of(
                datagram.buffer,
                datagram.start..datagram.start + datagram.len,
            );
            if moves(datagram.destination) {
                into.push(datagram.destination, contents);
            } else if datagram.buffer == BufferIndex::Copies {
                let start = kept_bytes.len();
                kept_bytes.extend_from_slice(contents);
                self.staged[kept] = Staged { start, ..datagram };
                kept += 1;
            } else {
                // Stays where it is, in its handed buffer.
                self.staged[kept] = datagram;
                kept += 1;
            }
        }
        self.staged.truncate(kept);
        self.spare_bytes = std::mem::replace(&mut self.staged_bytes, kept_bytes);
        self.groups.clear();
    }

    /// Groups the staged datagrams: runs of consecutive datagrams to one
    /// destination, of equal size (a shorter one may end a run), at most
    /// `max_segments` and [`MAX_GSO_BYTES`]. `max_segments` of 1 means no
    /// GSO: one group per datagram.
    pub fn arrange(&mut self, max_segments: usize) {
        let max_segments = max_segments.max(1);
        self.groups.clear();
        let mut open: Option<GroupSpan> = None;
        for datagram in &self.staged {
            let end = datagram.start + datagram.len;
            if let Some(group) = open.as_mut() {
                let joins = group.destination == datagram.destination
                    // Back to back in one buffer.
                    && group.buffer == datagram.buffer
                    && group.bytes.end == datagram.start
                    && group.datagrams < max_segments
                    && group.bytes.len() + datagram.len <= MAX_GSO_BYTES
                    // Every segment but the last has the group's size, so
                    // only a group whose last datagram is full size grows.
                    && group.bytes.len() == group.segment_size * group.datagrams
                    && datagram.len <= group.segment_size
                    && datagram.len > 0;
                if joins {
                    group.bytes.end = end;
                    group.datagrams += 1;
                    continue;
                }
            }
            if let Some(done) = open.take() {
                self.groups.push(done);
            }
            open = Some(GroupSpan {
                destination: datagram.destination,
                buffer: datagram.buffer,
                bytes: datagram.start..end,
                segment_size: datagram.len,
                datagrams: 1,
            });
        }
        if let Some(done) = open {
            self.groups.push(done);
        }
    }

    /// The groups of the last [`SendBatch::arrange`].
    pub fn groups(&self) -> impl Iterator<Item = Group<'_>> {
        self.groups_in(0..self.groups.len())
    }

    /// The groups of `range` (a [`Run`]'s) of the last
    /// [`SendBatch::arrange`].
    pub fn groups_in(&self, range: Range<usize>) -> impl Iterator<Item = Group<'_>> {
        let spans = self.groups.get(range).unwrap_or_default();
        spans.iter().map(|span| Group {
            destination: span.destination,
            contents: self.bytes_of(span.buffer, span.bytes.clone()),
            segment_size: (span.datagrams > 1).then_some(span.segment_size),
            datagrams: span.datagrams,
        })
    }

    /// The groups of the last [`SendBatch::arrange`] in runs that one
    /// `sendmmsg` can carry, at most `max_messages` groups each. The
    /// segment size is a socket option of each message, given once for a
    /// call, so a run's groups of several datagrams share one segment
    /// size, and a single datagram joins when it is no longer than that
    /// size (the kernel sends a message no longer than its segment size
    /// whole). A fan-out's audio packets, one per subscriber, are one run.
    pub fn runs(&self, max_messages: usize) -> SmallVec<[Run; INLINE_RUNS]> {
        let max_messages = max_messages.max(1);
        let mut runs: SmallVec<[Run; INLINE_RUNS]> = SmallVec::new();
        // The open run's longest single datagram.
        let mut longest_single = 0;
        for (index, group) in self.groups.iter().enumerate() {
            let single = group.datagrams == 1;
            let joins = runs.last().is_some_and(|run| {
                run.groups.end == index
                    && run.groups.len() < max_messages
                    && match (run.segment_size, single) {
                        (Some(size), true) => group.bytes.len() <= size,
                        (Some(size), false) => group.segment_size == size,
                        (None, true) => true,
                        (None, false) => longest_single <= group.segment_size,
                    }
            });
            if !joins {
                longest_single = 0;
                runs.push(Run {
                    groups: index..index,
                    segment_size: None,
                });
            }
            if let Some(run) = runs.last_mut() {
                run.groups.end = index + 1;
                if single {
                    longest_single = longest_single.max(group.bytes.len());
                } else {
                    run.segment_size = Some(group.segment_size);
                }
            }
        }
        runs
    }

    /// Gives back buffer space beyond `bytes` (after a burst, so that a
    /// large room's biggest keyframe is not held forever).
    pub fn shrink_to(&mut self, bytes: usize) {
        self.staged_bytes.shrink_to(bytes);
        self.handed.shrink_to(bytes / 1000);
        self.spare_bytes.shrink_to(bytes);
        let datagrams = bytes / 1000;
        self.staged.shrink_to(datagrams);
        self.groups.shrink_to(datagrams);
    }

    /// Empties the batch as [`SendBatch::clear`] does, giving each handed
    /// buffer to `give_back` (its datagrams were sent) instead of freeing
    /// it.
    pub fn clear_giving_back(&mut self, give_back: impl FnMut(Vec<u8>)) {
        self.handed.drain(..).for_each(give_back);
        self.clear();
    }

    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.oldest_input = None;
        self.staged.clear();
        self.staged_bytes.clear();
        // The handed buffers are freed: each was one subscriber's pass.
        self.handed.clear();
        self.groups.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn datagram(tag: u8, len: usize) -> Vec<u8> {
        vec![tag; len]
    }

    /// (port, segment size, datagram count, total bytes) per group.
    fn shape(batch: &SendBatch) -> Vec<(u16, Option<usize>, usize, usize)> {
        batch
            .groups()
            .map(|g| {
                (
                    g.destination.port(),
                    g.segment_size,
                    g.datagrams,
                    g.contents.len(),
                )
            })
            .collect()
    }

    /// (groups, segment size) per run.
    fn runs(batch: &SendBatch, max_messages: usize) -> Vec<(usize, Option<usize>)> {
        batch
            .runs(max_messages)
            .into_iter()
            .map(|run| (run.groups.len(), run.segment_size))
            .collect()
    }

    #[test]
    fn a_fan_out_of_single_datagrams_is_one_run() {
        let mut batch = SendBatch::new();
        // An audio packet to each of 50 subscribers (sizes differ a little).
        for port in 0..50u16 {
            batch.push(addr(1000 + port), &datagram(1, 120 + usize::from(port % 3)));
        }
        batch.arrange(64);
        assert_eq!(runs(&batch, 64), vec![(50, None)]);
        assert_eq!(
            runs(&batch, 16),
            vec![(16, None), (16, None), (16, None), (2, None)]
        );
    }

    #[test]
    fn runs_share_one_segment_size_and_take_shorter_single_datagrams() {
        let mut batch = SendBatch::new();
        // Subscriber 1: a frame of 3 x 1000 and an audio packet; 2: the
        // same frame; 3: an audio packet; 4: a frame of 2 x 900 (another
        // size starts a run); 5: a single datagram longer than 900 (would
        // be cut: starts a run); 6: a frame of 2 x 1000, which may not
        // follow the 1100 in one run (it would be cut at 1000).
        for (port, sizes) in [
            (1, vec![1000, 1000, 1000]),
            (1, vec![120]),
            (2, vec![1000, 1000, 1000]),
            (3, vec![120]),
            (4, vec![900, 900]),
            (5, vec![1100]),
            (6, vec![1000, 1000]),
        ] {
            for len in sizes {
                batch.push(addr(port), &datagram(0, len));
            }
        }
        batch.arrange(64);
        assert_eq!(
            shape(&batch)
                .iter()
                .map(|(_, size, count, _)| (*size, *count))
                .collect::<Vec<_>>(),
            vec![
                (Some(1000), 4),
                (Some(1000), 3),
                (None, 1),
                (Some(900), 2),
                (None, 1),
                (Some(1000), 2)
            ]
        );
        assert_eq!(
            runs(&batch, 64),
            vec![(3, Some(1000)), (1, Some(900)), (1, None), (1, Some(1000))]
        );
        // Single datagrams first, then a frame whose segments are at least
        // as long: one run (so 1100 then 2 x 1200 would be one too).
        let mut batch = SendBatch::new();
        batch.push(addr(1), &datagram(0, 120));
        batch.push(addr(2), &datagram(0, 1000));
        batch.push(addr(3), &datagram(0, 1000));
        batch.push(addr(3), &datagram(0, 1000));
        batch.arrange(64);
        assert_eq!(runs(&batch, 64), vec![(3, Some(1000))]);
        // Without GSO every group is one datagram: runs of any sizes.
        batch.arrange(1);
        assert_eq!(runs(&batch, 64), vec![(4, None)]);
    }

    #[test]
    fn a_frame_to_each_subscriber_becomes_one_send_per_subscriber() {
        let mut batch = SendBatch::new();
        // Two subscribers, each sent 4 packets of 1200, a last of 700 and
        // an audio packet, one subscriber after the other as a room emits
        // them.
        for port in [2000, 1000] {
            for packet in 0..6u8 {
                let len = match packet {
                    4 => 700,
                    5 => 120,
                    _ => 1200,
                };
                batch.push(addr(port), &datagram(packet, len));
            }
        }
        batch.arrange(64);
        assert_eq!(
            shape(&batch),
            vec![
                (2000, Some(1200), 5, 5500),
                (2000, None, 1, 120),
                (1000, Some(1200), 5, 5500),
                (1000, None, 1, 120)
            ]
        );
        // The datagrams keep their order.
        let first = batch.groups().next().expect("a group");
        let tags: Vec<u8> = first.contents.chunks(1200).map(|c| c[0]).collect();
        assert_eq!(tags, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_destination_interleaved_with_another_is_not_merged_across() {
        let mut batch = SendBatch::new();
        batch.push(addr(1000), &datagram(1, 1200));
        batch.push(addr(2000), &datagram(2, 1200));
        batch.push(addr(1000), &datagram(3, 1200));
        batch.push(addr(1000), &datagram(4, 1200));
        batch.arrange(64);
        assert_eq!(
            shape(&batch),
            vec![
                (1000, None, 1, 1200),
                (2000, None, 1, 1200),
                (1000, Some(1200), 2, 2400)
            ]
        );
    }

    #[test]
    fn a_longer_datagram_or_one_after_a_short_one_starts_a_new_group() {
        let mut batch = SendBatch::new();
        for len in [1000, 1000, 1100, 500, 500, 100] {
            batch.push(addr(1000), &datagram(1, len));
        }
        batch.arrange(64);
        assert_eq!(
            shape(&batch),
            vec![
                (1000, Some(1000), 2, 2000),
                (1000, Some(1100), 2, 1600),
                (1000, Some(500), 2, 600),
            ]
        );
    }

    #[test]
    fn groups_respect_the_segment_and_byte_limits() {
        let mut batch = SendBatch::new();
        for _ in 0..10 {
            batch.push(addr(1000), &datagram(1, 1200));
        }
        batch.arrange(4);
        assert_eq!(
            shape(&batch),
            vec![
                (1000, Some(1200), 4, 4800),
                (1000, Some(1200), 4, 4800),
                (1000, Some(1200), 2, 2400),
            ]
        );
        batch.clear();
        for _ in 0..60 {
            batch.push(addr(1000), &datagram(1, 1200));
        }
        batch.arrange(64);
        let sizes: Vec<usize> = batch.groups().map(|g| g.datagrams).collect();
        assert_eq!(
            sizes,
            vec![54, 6],
            "54 x 1200 B is the most under {MAX_GSO_BYTES}"
        );
    }

    #[test]
    fn without_gso_every_datagram_is_its_own_send() {
        let mut batch = SendBatch::new();
        for _ in 0..3 {
            batch.push(addr(1000), &datagram(1, 1200));
        }
        batch.arrange(1);
        assert_eq!(shape(&batch), vec![(1000, None, 1, 1200); 3]);
    }

    #[test]
    fn split_off_moves_whole_destinations_and_keeps_order() {
        let mut batch = SendBatch::new();
        for packet in 0..3u8 {
            for port in [1000, 1001, 1002] {
                batch.push(addr(port), &datagram(packet, 100 + port as usize));
            }
        }
        let mut other = SendBatch::new();
        batch.split_off(|d| d.port() == 1001, &mut other);
        assert_eq!((batch.len(), other.len()), (6, 3));
        batch.arrange(64);
        other.arrange(64);
        // Interleaved pushes: nothing merges, but the order is kept.
        let ports: Vec<u16> = batch.groups().map(|g| g.destination.port()).collect();
        assert_eq!(ports, vec![1000, 1002, 1000, 1002, 1000, 1002]);
        assert_eq!(shape(&other), vec![(1001, Some(1101), 3, 3303)]);
        let moved = other.groups().next().expect("a group");
        let tags: Vec<u8> = moved.contents.chunks(1101).map(|c| c[0]).collect();
        assert_eq!(tags, vec![0, 1, 2]);
    }

    /// `sizes` datagrams tagged by their index, in one handed buffer.
    fn handed(sizes: &[usize]) -> Datagrams {
        let mut datagrams = Datagrams::new();
        for (index, len) in sizes.iter().enumerate() {
            datagrams.push(&datagram(index as u8, *len));
        }
        datagrams
    }

    #[test]
    fn handed_buffers_are_sent_from_as_they_are_and_group_like_copies() {
        let frame = [1200, 1200, 700];
        let mut copied = SendBatch::new();
        let mut sent_from_buffers = SendBatch::new();
        for port in [1000, 1001] {
            for (index, len) in frame.iter().enumerate() {
                copied.push(addr(port), &datagram(index as u8, *len));
            }
            sent_from_buffers.push_datagrams(addr(port), handed(&frame));
        }
        // An audio packet copied in between, and an empty hand-over.
        sent_from_buffers.push(addr(1002), &datagram(9, 120));
        sent_from_buffers.push_datagrams(addr(1003), Datagrams::new());
        copied.push(addr(1002), &datagram(9, 120));
        for batch in [&mut copied, &mut sent_from_buffers] {
            batch.arrange(64);
        }
        assert_eq!(shape(&sent_from_buffers), shape(&copied));
        assert_eq!(
            shape(&copied),
            vec![
                (1000, Some(1200), 3, 3100),
                (1001, Some(1200), 3, 3100),
                (1002, None, 1, 120)
            ]
        );
        let contents = |batch: &SendBatch| -> Vec<Vec<u8>> {
            batch.groups().map(|g| g.contents.to_vec()).collect()
        };
        assert_eq!(contents(&sent_from_buffers), contents(&copied));
    }

    #[test]
    fn sent_handed_buffers_are_given_back_whole() {
        let mut batch = SendBatch::new();
        let first = handed(&[1000, 1000]);
        let second = handed(&[300]);
        batch.push_datagrams(addr(1000), first);
        batch.push_datagrams(addr(1001), second);
        batch.push(addr(1002), &[7; 100]);
        batch.arrange(64);
        let mut given = Vec::new();
        batch.clear_giving_back(|buffer| given.push(buffer));
        assert!(batch.is_empty());
        assert_eq!(batch.groups().count(), 0);
        // The handed buffers as they were pushed; the copied datagram stays
        // in the batch's own buffer.
        let lengths: Vec<usize> = given.iter().map(Vec::len).collect();
        assert_eq!(lengths, vec![2000, 300]);
        assert_eq!(given[0][1000], 1);
    }

    #[test]
    fn two_handed_buffers_to_one_destination_are_two_sends() {
        let mut batch = SendBatch::new();
        batch.push_datagrams(addr(1000), handed(&[1000, 1000]));
        batch.push_datagrams(addr(1000), handed(&[1000]));
        batch.arrange(64);
        // Not back to back in memory: a GSO send needs one buffer.
        assert_eq!(
            shape(&batch),
            vec![(1000, Some(1000), 2, 2000), (1000, None, 1, 1000)]
        );
    }

    #[test]
    fn split_off_moves_handed_datagrams_and_keeps_the_rest_in_place() {
        let mut batch = SendBatch::new();
        batch.push_datagrams(addr(1000), handed(&[500, 500]));
        batch.push_datagrams(addr(1001), handed(&[600, 300]));
        batch.push(addr(1000), &datagram(7, 80));
        let mut other = SendBatch::new();
        batch.split_off(|d| d.port() == 1001, &mut other);
        batch.arrange(64);
        other.arrange(64);
        assert_eq!(
            shape(&batch),
            vec![(1000, Some(500), 2, 1000), (1000, None, 1, 80)]
        );
        assert_eq!(shape(&other), vec![(1001, Some(600), 2, 900)]);
        let tags: Vec<u8> = batch.groups().map(|g| g.contents[0]).collect();
        assert_eq!(tags, vec![0, 7]);
        batch.clear();
        assert!(batch.is_empty());
    }

    #[test]
    fn clear_empties_and_the_batch_is_reusable() {
        let mut batch = SendBatch::new();
        batch.push(addr(1000), &datagram(1, 10));
        batch.arrange(64);
        batch.clear();
        assert!(batch.is_empty());
        batch.arrange(64);
        assert_eq!(batch.groups().count(), 0);
        batch.push(addr(1000), &datagram(2, 10));
        batch.arrange(64);
        assert_eq!(shape(&batch), vec![(1000, None, 1, 10)]);
    }
}
