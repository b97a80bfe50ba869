//! The pure decision logic of the proxy: what a connection may do, given
//! when it was born and what the link looks like now. No IO, no clock.
//!
//! Mode changes are published through a `watch` channel, which coalesces
//! values: a connection task may never observe a short `Blackhole` or
//! `Refuse` that was set and cleared between two of its polls. To keep the
//! semantics deterministic anyway, [`LinkState`] counts how often each
//! fault was entered, and a connection compares those counts with the ones
//! it was born with ([`Birth`]).

use std::time::Duration;

use super::Mode;

/// Everything a connection task needs to know about its link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct LinkState {
    /// The current mode.
    pub(super) mode: Mode,
    /// How many times the mode has been set to [`Mode::Refuse`].
    pub(super) refusals: u64,
    /// How many times the mode has been set to [`Mode::Blackhole`].
    pub(super) blackholes: u64,
    /// The proxy is shutting down: every connection must be reset.
    pub(super) shutdown: bool,
}

impl LinkState {
    /// The state after `set_mode(mode)`. Setting a fault mode always counts
    /// as entering it, even if the link was already in that mode.
    pub(super) fn with_mode(self, mode: Mode) -> Self {
        let mut next = Self { mode, ..self };
        match mode {
            Mode::Refuse => next.refusals += 1,
            Mode::Blackhole => next.blackholes += 1,
            Mode::Pass | Mode::Delay(_) => {}
        }
        next
    }

    /// The latency to add to a chunk read now.
    pub(super) fn delay(&self) -> Duration {
        match self.mode {
            Mode::Delay(delay) => delay,
            Mode::Pass | Mode::Refuse | Mode::Blackhole => Duration::ZERO,
        }
    }
}

/// What the accept loop does with a freshly accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    /// Reset it at once (the link is refusing, or the proxy is stopping).
    Reset,
    /// Dial the upstream and forward.
    Forward,
    /// Keep it open but never dial the upstream (the SYN "vanished").
    Discard,
}

/// Decide what to do with a connection accepted while the link is `state`.
pub(super) fn admit(state: &LinkState) -> Admission {
    if state.shutdown {
        return Admission::Reset;
    }
    match state.mode {
        Mode::Refuse => Admission::Reset,
        Mode::Blackhole => Admission::Discard,
        Mode::Pass | Mode::Delay(_) => Admission::Forward,
    }
}

/// The fault counters a connection was born with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Birth {
    refusals: u64,
    blackholes: u64,
    in_blackhole: bool,
}

impl Birth {
    /// A connection accepted while the link is `state`.
    pub(super) fn at(state: &LinkState) -> Self {
        Self {
            refusals: state.refusals,
            blackholes: state.blackholes,
            in_blackhole: state.mode == Mode::Blackhole,
        }
    }
}

/// What an existing connection does with its bytes right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Forward bytes (with the current delay).
    Forward,
    /// Keep both sockets open, read and drop every byte, forward nothing.
    Discard,
    /// Reset both sockets and end the connection.
    Reset,
}

/// The verdict for a connection born at `birth` when the link is `state`.
///
/// - Any `Refuse` since birth, or shutdown: reset.
/// - A connection that lived through any `Blackhole` (or was born in one)
///   is "tainted": it discards while the link is still blackholed and is
///   reset as soon as the link is anything else, because bytes were (or may
///   have been) lost and a TCP stream cannot resume after a gap.
/// - Otherwise: forward.
pub(super) fn verdict(birth: Birth, state: &LinkState) -> Verdict {
    if state.shutdown || state.refusals != birth.refusals {
        return Verdict::Reset;
    }
    let tainted = birth.in_blackhole || state.blackholes != birth.blackholes;
    match (tainted, state.mode) {
        (false, _) => Verdict::Forward,
        (true, Mode::Blackhole) => Verdict::Discard,
        (true, _) => Verdict::Reset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(modes: &[Mode]) -> LinkState {
        modes
            .iter()
            .fold(LinkState::default(), |state, &mode| state.with_mode(mode))
    }

    #[test]
    fn fresh_connection_forwards_in_pass_and_delay() {
        for mode in [Mode::Pass, Mode::Delay(Duration::from_millis(5))] {
            let state = after(&[mode]);
            assert_eq!(admit(&state), Admission::Forward);
            assert_eq!(verdict(Birth::at(&state), &state), Verdict::Forward);
        }
    }

    #[test]
    fn refuse_resets_new_and_existing_connections() {
        let birth = Birth::at(&LinkState::default());
        let refusing = after(&[Mode::Refuse]);
        assert_eq!(admit(&refusing), Admission::Reset);
        assert_eq!(verdict(birth, &refusing), Verdict::Reset);
    }

    #[test]
    fn a_coalesced_refuse_still_resets() {
        let birth = Birth::at(&LinkState::default());
        let state = after(&[Mode::Refuse, Mode::Pass]);
        assert_eq!(verdict(birth, &state), Verdict::Reset);
    }

    #[test]
    fn blackhole_discards_then_resets_when_lifted() {
        let birth = Birth::at(&LinkState::default());
        assert_eq!(verdict(birth, &after(&[Mode::Blackhole])), Verdict::Discard);
        for lifted in [
            Mode::Pass,
            Mode::Delay(Duration::from_millis(1)),
            Mode::Refuse,
        ] {
            let state = after(&[Mode::Blackhole, lifted]);
            assert_eq!(verdict(birth, &state), Verdict::Reset, "{lifted:?}");
        }
    }

    #[test]
    fn born_in_blackhole_discards_then_resets() {
        let state = after(&[Mode::Blackhole]);
        assert_eq!(admit(&state), Admission::Discard);
        let birth = Birth::at(&state);
        assert_eq!(verdict(birth, &state), Verdict::Discard);
        assert_eq!(verdict(birth, &state.with_mode(Mode::Pass)), Verdict::Reset);
    }

    #[test]
    fn connections_born_after_a_blackhole_forward() {
        let healed = after(&[Mode::Blackhole, Mode::Pass]);
        assert_eq!(admit(&healed), Admission::Forward);
        assert_eq!(verdict(Birth::at(&healed), &healed), Verdict::Forward);
    }

    #[test]
    fn delay_changes_do_not_taint() {
        let birth = Birth::at(&LinkState::default());
        let state = after(&[Mode::Delay(Duration::from_millis(3)), Mode::Pass]);
        assert_eq!(verdict(birth, &state), Verdict::Forward);
        assert_eq!(state.delay(), Duration::ZERO);
    }

    #[test]
    fn shutdown_resets_everything() {
        let state = LinkState {
            shutdown: true,
            ..LinkState::default()
        };
        assert_eq!(admit(&state), Admission::Reset);
        assert_eq!(verdict(Birth::at(&state), &state), Verdict::Reset);
    }
}
