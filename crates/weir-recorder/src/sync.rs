//! A/V alignment from RTCP Sender Reports (recording.md rule 1).
//!
//! Each track's RTP clock is mapped to the recorder's timeline (µs since the
//! recorder's epoch). With sender reports, both tracks go through the
//! sender's NTP clock: one offset per publisher (NTP − local time at the
//! first report) and per track the latest (NTP, RTP) pair, so audio and
//! video line up however their packets were delayed. Before any report the
//! mapping falls back to the arrival time of the track's first frame.

/// An RTCP Sender Report's clock pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport {
    /// NTP timestamp (32.32 fixed point seconds since 1900).
    pub ntp_time: u64,
    /// RTP timestamp of the same instant.
    pub rtp_time: crate::rtp::RtpTime,
}

/// NTP 32.32 → microseconds (since 1900).
pub fn ntp_to_us(ntp: u64) -> i64 {
    let seconds = (ntp >> 32) as i64;
    let fraction = ((ntp & 0xffff_ffff) * 1_000_000) >> 32;
    seconds * 1_000_000 + fraction as i64
}

/// The publisher's NTP clock relative to the recorder's timeline.
#[derive(Debug, Default, Clone)]
pub struct SenderClock {
    offset_us: Option<i64>,
}

impl SenderClock {
    /// Learns the offset from the first report (`arrival_us` on the timeline).
    pub fn observe(&mut self, report: &SenderReport, arrival_us: i64) {
        if self.offset_us.is_none() {
            self.offset_us = Some(ntp_to_us(report.ntp_time) - arrival_us);
        }
    }

    /// Whether a report was seen.
    pub fn known(&self) -> bool {
        self.offset_us.is_some()
    }

    /// Timeline µs of a track's media `delta_ticks` (at `rate`) after its
    /// latest report's instant `report_ntp`.
    pub fn map(&self, report_ntp: u64, delta_ticks: i64, rate: u32) -> Option<i64> {
        let offset = self.offset_us?;
        let delta_us = (i128::from(delta_ticks) * 1_000_000 / i128::from(rate)) as i64;
        Some(ntp_to_us(report_ntp) - offset + delta_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_fraction_converts() {
        assert_eq!(ntp_to_us((5 << 32) | 0x8000_0000), 5_500_000);
    }

    #[test]
    fn two_tracks_align_through_ntp() {
        let mut clock = SenderClock::default();
        let ntp = 1000u64 << 32;
        clock.observe(
            &SenderReport {
                ntp_time: ntp,
                rtp_time: crate::rtp::RtpTime(0),
            },
            2_000_000,
        );
        // Audio frame 48000 ticks after its report = 1 s later.
        let a = clock.map(ntp, 48_000, 48_000);
        assert_eq!(a, Some(3_000_000));
    }
}
