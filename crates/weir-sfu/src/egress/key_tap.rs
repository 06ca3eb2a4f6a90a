//! The SRTP keys of a str0m session, for Weir's own egress.
//!
//! str0m takes its DTLS implementation from a pluggable
//! [`CryptoProvider`]; the DTLS instance reports the exported keying
//! material and the negotiated profile as one of its outputs
//! (`DtlsOutput::KeyingMaterial`). [`tapped_rtc`] builds an `Rtc` whose
//! provider is str0m's own (aws-lc-rs) with its DTLS instances wrapped: the
//! wrapper passes everything through unchanged and keeps a copy of the
//! keying material in the session's [`KeyTap`].
//!
//! A DTLS instance is created inside `RtcConfig::build`; the tap to fill is
//! handed to it through a thread-local set only for that call.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
    SrtpProfile,
};
use str0m::crypto::{CryptoError, CryptoProvider};
use str0m::{Rtc, RtcConfig};
use zeroize::Zeroizing;

use super::srtp_keys::{AeadProfile, KeyError, MasterKey};

/// The keying material of one session once its DTLS handshake is done.
pub struct TappedKeys {
    profile: SrtpProfile,
    material: Zeroizing<Vec<u8>>,
    dtls_client: bool,
}

impl std::fmt::Debug for TappedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TappedKeys")
            .field("profile", &self.profile)
            .field("dtls_client", &self.dtls_client)
            .finish_non_exhaustive()
    }
}

impl TappedKeys {
    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }

    /// This end was the DTLS client.
    pub fn dtls_client(&self) -> bool {
        self.dtls_client
    }

    /// The master key this end sends with; `None` for a profile Weir does
    /// not seal itself (AES-CM with HMAC-SHA1).
    pub fn outbound(&self) -> Option<Result<MasterKey, KeyError>> {
        let profile = AeadProfile::from_dtls(self.profile)?;
        Some(MasterKey::outbound(
            profile,
            &self.material,
            self.dtls_client,
        ))
    }

    /// The master key the peer sends with.
    pub fn inbound(&self) -> Option<Result<MasterKey, KeyError>> {
        let profile = AeadProfile::from_dtls(self.profile)?;
        Some(MasterKey::inbound(
            profile,
            &self.material,
            self.dtls_client,
        ))
    }
}

/// Where one session's keys appear when its DTLS handshake completes.
#[derive(Debug, Clone, Default)]
pub struct KeyTap(Arc<OnceLock<TappedKeys>>);

impl KeyTap {
    /// The session's keys, once DTLS has completed.
    pub fn keys(&self) -> Option<&TappedKeys> {
        self.0.get()
    }
}

thread_local! {
    /// The tap the next DTLS instance built on this thread fills.
    static NEXT_TAP: RefCell<Option<KeyTap>> = const { RefCell::new(None) };
}

/// Builds `config` into an `Rtc` whose SRTP keys appear in the returned
/// tap. The config's own crypto provider, if set, is replaced by str0m's
/// default with tapped DTLS.
pub fn tapped_rtc(config: RtcConfig, now: Instant) -> (Rtc, KeyTap) {
    let tap = KeyTap::default();
    NEXT_TAP.with(|next| *next.borrow_mut() = Some(tap.clone()));
    let rtc = config
        .set_crypto_provider(tapping_provider().clone())
        .build(now);
    // Normally taken by the DTLS instance; never left for another build.
    NEXT_TAP.with(|next| next.borrow_mut().take());
    (rtc, tap)
}

fn tapping_provider() -> &'static Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    static DTLS: OnceLock<TappingDtlsProvider> = OnceLock::new();
    PROVIDER.get_or_init(|| {
        let mut provider = str0m::crypto::from_feature_flags();
        let dtls: &'static TappingDtlsProvider = DTLS.get_or_init(|| TappingDtlsProvider {
            inner: provider.dtls_provider,
        });
        provider.dtls_provider = dtls;
        Arc::new(provider)
    })
}

#[derive(Debug)]
struct TappingDtlsProvider {
    inner: &'static dyn DtlsProvider,
}

impl DtlsProvider for TappingDtlsProvider {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        self.inner.generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let inner = self.inner.new_dtls(cert, now, dtls_version, mtu)?;
        let tap = NEXT_TAP.with(|next| next.borrow_mut().take());
        Ok(Box::new(TappingDtls::new(inner, tap)))
    }

    fn is_test(&self) -> bool {
        self.inner.is_test()
    }
}

/// A DTLS instance that keeps its keying material in a [`KeyTap`].
///
/// str0m polls DTLS on every `Rtc::poll_output`, long after the handshake,
/// once per publisher packet and per subscriber run. A sans-IO DTLS
/// instance only has new output after an input (a packet, a timeout,
/// application data, a role or a close), so once it answered a poll with
/// its timer, the wrapper answers the next polls with that same timer
/// until the next input, without asking it (which walked its engine's
/// queues each time: ~1 % of the server's CPU at 1 -> 50).
#[derive(Debug)]
struct TappingDtls {
    inner: Box<dyn DtlsInstance>,
    tap: Option<KeyTap>,
    /// The timer the instance last answered a poll with, while no input
    /// has reached it since.
    idle_until: Option<Instant>,
}

impl TappingDtls {
    fn new(inner: Box<dyn DtlsInstance>, tap: Option<KeyTap>) -> Self {
        TappingDtls {
            inner,
            tap,
            idle_until: None,
        }
    }

    /// The instance is given an input: its next poll may have output.
    fn wake(&mut self) -> &mut dyn DtlsInstance {
        self.idle_until = None;
        &mut *self.inner
    }
}

impl DtlsInstance for TappingDtls {
    fn set_active(&mut self, active: bool) {
        self.wake().set_active(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.wake().handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        if let Some(at) = self.idle_until {
            return DtlsOutput::Timeout(at);
        }
        let output = self.inner.poll_output(buf);
        match &output {
            DtlsOutput::Timeout(at) => self.idle_until = Some(*at),
            DtlsOutput::KeyingMaterial(material, profile) => {
                if let Some(tap) = &self.tap {
                    // A second handshake on one session does not happen in
                    // WebRTC; if it did, the first keys stay (and egress
                    // would fail to be decrypted, never leak).
                    let _ = tap.0.set(TappedKeys {
                        profile: *profile,
                        material: Zeroizing::new(material.to_vec()),
                        dtls_client: self.inner.is_active(),
                    });
                }
            }
            _ => {}
        }
        output
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.wake().handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.wake().send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.inner.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.inner.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.inner.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.wake().close()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// A DTLS instance that answers every poll with a timer `step` after
    /// its last input, and counts the polls that reach it.
    #[derive(Debug)]
    struct CountingDtls {
        polls: Arc<AtomicUsize>,
        last_input: Instant,
        step: Duration,
        queued_packet: bool,
    }

    impl DtlsInstance for CountingDtls {
        fn set_active(&mut self, _active: bool) {}

        fn handle_packet(&mut self, _packet: &[u8]) -> Result<(), DtlsImplError> {
            self.queued_packet = true;
            Ok(())
        }

        fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if std::mem::take(&mut self.queued_packet) {
                buf[0] = 22;
                return DtlsOutput::Packet(&buf[..1]);
            }
            DtlsOutput::Timeout(self.last_input + self.step)
        }

        fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
            self.last_input = now;
            Ok(())
        }

        fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
            self.queued_packet = true;
            Ok(data.len())
        }

        fn is_active(&self) -> bool {
            false
        }

        fn protocol_version(&self) -> Option<ProtocolVersion> {
            None
        }

        fn close(&mut self) -> Result<(), DtlsImplError> {
            self.queued_packet = true;
            Ok(())
        }
    }

    fn timer(output: DtlsOutput<'_>) -> Option<Instant> {
        match output {
            DtlsOutput::Timeout(at) => Some(at),
            _ => None,
        }
    }

    fn is_packet(output: &DtlsOutput<'_>) -> bool {
        matches!(output, DtlsOutput::Packet(_))
    }

    #[test]
    fn an_idle_instance_is_asked_once_until_its_next_input() {
        let polls = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let step = Duration::from_secs(1);
        let mut dtls = TappingDtls::new(
            Box::new(CountingDtls {
                polls: polls.clone(),
                last_input: start,
                step,
                queued_packet: false,
            }),
            None,
        );
        let mut buf = [0u8; 64];

        // Idle: the first poll reaches the instance, the next ones get its
        // timer without asking it.
        assert_eq!(timer(dtls.poll_output(&mut buf)), Some(start + step));
        for _ in 0..5 {
            assert_eq!(timer(dtls.poll_output(&mut buf)), Some(start + step));
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1);

        // A packet in: what it produced comes out, then the timer again.
        dtls.handle_packet(&[22]).expect("a packet in");
        assert!(is_packet(&dtls.poll_output(&mut buf)));
        assert_eq!(timer(dtls.poll_output(&mut buf)), Some(start + step));
        assert_eq!(timer(dtls.poll_output(&mut buf)), Some(start + step));
        assert_eq!(polls.load(Ordering::SeqCst), 3);

        // A timeout in: the new timer, not the remembered one.
        let later = start + Duration::from_millis(300);
        dtls.handle_timeout(later).expect("a timeout in");
        assert_eq!(timer(dtls.poll_output(&mut buf)), Some(later + step));
        assert_eq!(polls.load(Ordering::SeqCst), 4);

        // Application data and a close are inputs too.
        dtls.send_application_data(b"x").expect("data in");
        assert!(is_packet(&dtls.poll_output(&mut buf)));
        assert_eq!(timer(dtls.poll_output(&mut buf)), Some(later + step));
        dtls.close().expect("a close");
        assert!(is_packet(&dtls.poll_output(&mut buf)));
        assert_eq!(timer(dtls.poll_output(&mut buf)), Some(later + step));
        assert_eq!(polls.load(Ordering::SeqCst), 8);
    }
}
