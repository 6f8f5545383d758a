//! How long an idle worker busy-polls before it sleeps.
//!
//! Polling after the last packet saves the wake-up when the next one comes
//! soon (the answer to a request just sent), and burns the core when it
//! does not (the pause after a burst of a paced stream): every window that
//! ends in sleep is pure cost. Two limits keep that cost small:
//! - the window follows the traffic: about twice the gap after which work
//!   came back lately (counting only gaps within `dataplane.busy_poll_us`),
//!   never longer than that setting. Answers after 60 µs keep a 100 µs
//!   window; packets 5 µs apart get one of 10 µs;
//! - a budget: polling that bought nothing but latency may take at most
//!   1/[`BUDGET_SHARE`] of a worker's time; once it is spent, the worker
//!   sleeps at once until it has saved up again. Charged: windows that end
//!   in sleep (polled for nothing), and of windows that found work, what
//!   they polled beyond [`WAKE_COST`] (a short wait saved the CPU a wake-up
//!   costs), unless the worker is busy more than half its time (a
//!   saturated stream: its next packet is near, polling keeps up with
//!   it, sleeping would leave the core idle in between). Request
//!   and response at a human pace (a ping every 20 ms) never meet it; a
//!   paced stream with thousands of pauses a second (measured: about
//!   2,900, spread evenly over 0–180 µs, at 3 Gbit/s) used to poll for 15 %
//!   of each worker's core, and now stops at the budget, sleeping through
//!   its pauses as a worker without polling does.

use std::time::{Duration, Instant};

/// The floor of the window: below this a wake-up costs more than polling.
const MIN_WINDOW: Duration = Duration::from_micros(10);
/// What going to sleep and being woken costs the machine in CPU time (the
/// waker's wake-up and IPI, two passes through the scheduler): polling
/// that finds work sooner than this saved CPU; polling longer bought
/// latency with CPU, and the excess is charged to the budget.
pub const WAKE_COST: Duration = Duration::from_micros(20);
/// Weight of the newest gap in the running average (1/8, as TCP's SRTT).
const NEW_WEIGHT: u32 = 8;
/// The share of a worker's time it may spend polling for latency alone:
/// 1/50. Measured A/B against the build before this budget and
/// [`WAKE_COST`] (6 interleaved rounds, weftd's own CPU from schedstat):
/// one stream paced at 3 Gbit/s 0.61 vs 0.75 cores, one stream at
/// saturation level (8.2 vs 8.3 Gbit/s). Without the saturation test
/// (`saturated`), the same budget cost one stream 6 % (the worker slept
/// through gaps a saturated stream fills at once); charging waits beyond
/// 10 µs instead of 20 cost it 10 %.
pub const BUDGET_SHARE: u32 = 50;
/// The most polling time saved up for a burst of exchanges.
const BUDGET_MAX: Duration = Duration::from_millis(2);

/// A worker's adaptive busy-poll window and its polling budget.
#[derive(Debug, Clone)]
pub struct SpinWindow {
    /// The configured window: the most it may be.
    max: Duration,
    /// Running average of the gaps that ended within `max`.
    typical: Duration,
    /// Polling time that may still be wasted, refilled at
    /// 1/[`BUDGET_SHARE`] of time passing.
    budget: Duration,
    /// When the budget was last refilled.
    refilled: Instant,
    /// Running averages of the worker's busy stretches and of its idle
    /// gaps (all of them, up to [`GAP_CAP`]): their ratio is how busy it is.
    busy_avg: Duration,
    idle_avg: Duration,
    /// When the current idle gap began, and when the last one ended.
    idle_from: Option<Instant>,
    resumed: Option<Instant>,
}

/// Idle gaps count up to this in the busy share (a night of silence must
/// not take minutes of traffic to forget).
const GAP_CAP: Duration = Duration::from_millis(10);

impl SpinWindow {
    /// A window of at most `max` (zero: never poll), starting at `max`
    /// with a full budget.
    pub fn new(max: Duration, now: Instant) -> SpinWindow {
        SpinWindow {
            max,
            typical: max,
            budget: BUDGET_MAX,
            refilled: now,
            busy_avg: Duration::ZERO,
            idle_avg: GAP_CAP,
            idle_from: None,
            resumed: None,
        }
    }

    /// Whether the worker is busy more than half its time: its next packet
    /// is near (a saturated stream), and polling for it costs less than
    /// sleeping would.
    fn saturated(&self) -> bool {
        self.busy_avg > self.idle_avg
    }

    /// How long to poll from `now` (when the worker went idle) before
    /// sleeping.
    pub fn window(&mut self, now: Instant) -> Duration {
        if self.max.is_zero() {
            return Duration::ZERO;
        }
        if self.idle_from != Some(now) {
            if let Some(resumed) = self.resumed.take() {
                let busy = now.saturating_duration_since(resumed);
                self.busy_avg = average(self.busy_avg, busy);
            }
            self.idle_from = Some(now);
        }
        let earned = now.saturating_duration_since(self.refilled) / BUDGET_SHARE;
        self.budget = (self.budget + earned).min(BUDGET_MAX);
        self.refilled = now;
        let wanted = (self.typical * 2).clamp(MIN_WINDOW.min(self.max), self.max);
        if self.budget < wanted {
            return Duration::ZERO;
        }
        wanted
    }

    /// Takes `polled` (a window just polled through without finding work)
    /// from the budget.
    pub fn wasted(&mut self, polled: Duration) {
        self.budget = self.budget.saturating_sub(polled);
    }

    /// A window found work after `polled`: it saved a wake-up, worth
    /// [`WAKE_COST`] of CPU; what it polled beyond that is charged, unless
    /// the worker is saturated (then the wait was short next to its work).
    pub fn found_after(&mut self, polled: Duration) {
        if !self.saturated() {
            self.wasted(polled.saturating_sub(WAKE_COST));
        }
    }

    /// Records an idle gap that ended with work after `gap` (polled or
    /// slept through). Gaps longer than the configured window say nothing
    /// about how soon answers come, and are left out of the window.
    pub fn record(&mut self, gap: Duration) {
        self.idle_avg = average(self.idle_avg, gap.min(GAP_CAP));
        self.resumed = self.idle_from.take().map(|from| from + gap);
        if gap >= self.max {
            return;
        }
        self.typical = average(self.typical, gap);
    }
}

/// A running average with the newest value weighted 1/[`NEW_WEIGHT`].
fn average(avg: Duration, new: Duration) -> Duration {
    (avg * (NEW_WEIGHT - 1) + new) / NEW_WEIGHT
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    /// Answers after 60 µs, once every 20 ms, keep the whole 100 µs window.
    #[test]
    fn request_response_keeps_the_window() {
        let t = Instant::now();
        let mut w = SpinWindow::new(100 * US, t);
        for i in 0..100 {
            let now = t + i * 20_000 * US;
            assert_eq!(w.window(now), 100 * US, "exchange {i}");
            w.wasted(60 * US);
            w.record(60 * US);
        }
    }

    /// Packets 5 µs apart, with a long pause after each burst, shrink it
    /// to about twice the gap; the pauses do not count.
    #[test]
    fn a_stream_shrinks_it_and_pauses_do_not_count() {
        let t = Instant::now();
        let mut w = SpinWindow::new(100 * US, t);
        for _ in 0..50 {
            for _ in 0..10 {
                w.record(5 * US);
            }
            w.record(900 * US);
        }
        let got = w.window(t);
        assert!((10 * US..=12 * US).contains(&got), "{got:?}");
    }

    /// Polling every idle moment of a busy second stops at the budget: over
    /// one second of 3,000 pauses, at most 1/BUDGET_SHARE of it (plus what
    /// was saved up) goes to polling, and polling goes on at that rate.
    #[test]
    fn the_budget_caps_polling() {
        let t = Instant::now();
        let mut w = SpinWindow::new(100 * US, t);
        let (mut polled, mut windows) = (Duration::ZERO, 0);
        for i in 0..3000u32 {
            let now = t + i * 333 * US;
            let win = w.window(now);
            if !win.is_zero() {
                windows += 1;
            }
            w.wasted(win); // every window ends in sleep: all of it wasted
            polled += win;
            w.record(60 * US);
        }
        let share = Duration::from_secs(1) / BUDGET_SHARE;
        assert!(polled <= share + BUDGET_MAX, "{polled:?}");
        assert!(polled >= share * 4 / 5, "{polled:?}");
        assert!(windows > 100, "{windows} windows");
    }

    /// A window that finds work within the cost of a wake-up is free; one
    /// that waited longer pays for the excess while the worker is idle
    /// most of the time (a paced stream), and nothing while it is busy
    /// most of the time (a saturated one).
    #[test]
    fn long_waits_that_find_work_are_charged_unless_the_worker_is_saturated() {
        // Busy for a while, then a wait of WAKE_COST + 40 µs that finds
        // work, again and again.
        let wait = WAKE_COST + 40 * US;
        let run = |busy: Duration| {
            let mut now = Instant::now();
            let mut w = SpinWindow::new(100 * US, now);
            let mut spent = false;
            for _ in 0..200 {
                now += busy;
                spent |= w.window(now).is_zero();
                w.found_after(wait);
                w.record(wait);
                now += wait;
            }
            spent
        };
        assert!(run(30 * US), "a mostly idle worker spends its budget");
        assert!(!run(200 * US), "a saturated worker never does");
        let t = Instant::now();
        let mut w = SpinWindow::new(100 * US, t);
        for _ in 0..10_000 {
            w.found_after(WAKE_COST);
        }
        assert_eq!(w.window(t), 100 * US, "short waits cost nothing");
    }

    /// When answers slow down again (while the worker slept through the
    /// short window), it grows back to the setting.
    #[test]
    fn it_grows_back() {
        let t = Instant::now();
        let mut w = SpinWindow::new(100 * US, t);
        for _ in 0..100 {
            w.record(5 * US);
        }
        for _ in 0..100 {
            w.record(80 * US);
        }
        assert_eq!(w.window(t), 100 * US);
    }

    /// Zero means never poll; a setting below the floor is kept.
    #[test]
    fn zero_and_tiny_settings() {
        let t = Instant::now();
        let mut w = SpinWindow::new(Duration::ZERO, t);
        w.record(US);
        assert_eq!(w.window(t), Duration::ZERO);
        let mut w = SpinWindow::new(4 * US, t);
        w.record(US);
        assert_eq!(w.window(t), 4 * US);
    }
}
