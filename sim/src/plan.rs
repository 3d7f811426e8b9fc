//! Scenarios, and the plan each one draws from a seed.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use mcp_pool_echo::Era;
use rmcp::model::CacheScope;

/// A family of simulated runs; each seed draws one [`Plan`] from it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    /// Callers under steady load, no fault.
    Steady,
    /// The reported failure: 10 callers of an echo tool with a 500 ms delay;
    /// the backend crashes (its connections hang, its sessions are lost)
    /// and comes back while they run.
    CrashBounce,
    /// The backend crashes and never comes back.
    CrashForever,
    /// The link to the backend is cut (new connects and open exchanges
    /// stall), then repaired.
    Partition,
    /// The link holds every message for a while, then delivers them late
    /// (a latency spike).
    Hold,
    /// The link fails and repairs itself at random (turmoil's fail and
    /// repair rates) for a while.
    Flaky,
    /// Every reuse is checked first, and for a while the link is slower than
    /// the check timeout, so checks time out and sessions are replaced.
    SlowChecks,
    /// The backend is unreachable from the start, so connects fail and trip
    /// the breaker, then it becomes reachable.
    Breaker,
    /// Callers give up on calls mid-way (the future is dropped).
    Cancel,
    /// The pool shuts down while callers hold leases.
    Shutdown,
    /// Several identities and affinity keys share the pool under load.
    Identities,
    /// Mid-run the backend is replaced, on the same address, by one of
    /// another protocol era (legacy stateful to modern, modern to legacy
    /// stateful, legacy stateful to legacy stateless, or back), while
    /// several identities call it and list its tools from the connector's
    /// cache (private results, invariant C1).
    EraSwap,
}

impl Scenario {
    /// Every scenario, in report order.
    pub const ALL: [Scenario; 12] = [
        Scenario::Steady,
        Scenario::CrashBounce,
        Scenario::CrashForever,
        Scenario::Partition,
        Scenario::Hold,
        Scenario::Flaky,
        Scenario::SlowChecks,
        Scenario::Breaker,
        Scenario::Cancel,
        Scenario::Shutdown,
        Scenario::Identities,
        Scenario::EraSwap,
    ];

    /// The scenario's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Steady => "steady",
            Scenario::CrashBounce => "crash-bounce",
            Scenario::CrashForever => "crash-forever",
            Scenario::Partition => "partition",
            Scenario::Hold => "hold",
            Scenario::Flaky => "flaky",
            Scenario::SlowChecks => "slow-checks",
            Scenario::Breaker => "breaker",
            Scenario::Cancel => "cancel",
            Scenario::Shutdown => "shutdown",
            Scenario::Identities => "identities",
            Scenario::EraSwap => "era-swap",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A scenario name that is not one of [`Scenario::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownScenario(pub String);

impl fmt::Display for UnknownScenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
        write!(
            f,
            "unknown scenario `{}` (one of: {})",
            self.0,
            names.join(", ")
        )
    }
}

impl std::error::Error for UnknownScenario {}

impl FromStr for Scenario {
    type Err = UnknownScenario;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scenario::ALL
            .into_iter()
            .find(|scenario| scenario.name() == s)
            .ok_or_else(|| UnknownScenario(s.to_owned()))
    }
}

/// A change to the simulated world at a moment of the run.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum Fault {
    /// The backend host stops: its open connections hang, nothing answers.
    Crash,
    /// The backend host restarts with a fresh echo server (no sessions).
    Bounce,
    /// The link between gateway and backend is cut both ways.
    Partition,
    /// The cut link is restored.
    Repair,
    /// The link holds every message.
    Hold,
    /// The held messages go through.
    Release,
    /// The link's one-way latency becomes this.
    Latency(Duration),
    /// Links fail at this rate per step (and repair at the plan's rate).
    FailRate(f64),
    /// The backend host restarts at once with a fresh echo server of this
    /// era (no sessions) on the same address.
    Swap(Era),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Crash => f.write_str("crash backend"),
            Fault::Bounce => f.write_str("bounce backend"),
            Fault::Partition => f.write_str("partition link"),
            Fault::Repair => f.write_str("repair link"),
            Fault::Hold => f.write_str("hold link"),
            Fault::Release => f.write_str("release link"),
            Fault::Latency(d) => write!(f, "link latency {}ms", d.as_millis()),
            Fault::FailRate(p) => write!(f, "link fail rate {p}"),
            Fault::Swap(era) => write!(f, "swap backend for a {era} one"),
        }
    }
}

/// Everything one run does, drawn from a scenario and a seed: the same pair
/// always gives the same plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The scenario.
    pub scenario: Scenario,
    /// The seed (also turmoil's).
    pub seed: u64,
    /// Concurrent callers.
    pub callers: usize,
    /// The protocol era the backend serves from the start (see
    /// [`Plan::era_of_seed`]); a [`Fault::Swap`] changes it.
    pub era: Era,
    /// The `ttlMs` and `cacheScope` the backend puts on its 2026-07-28
    /// `server/discover` and `tools/list` results (`None`: rmcp's, `ttlMs`
    /// 0, nothing cached).
    pub cache_hint: Option<(u64, CacheScope)>,
    /// Every this many calls, a caller lists the server's tools (through
    /// the connector's cache) on the session before calling the tool
    /// (`None`: never).
    pub list_tools_every: Option<u64>,
    /// Distinct identities (tenants) the callers are spread over.
    pub identities: usize,
    /// Whether each caller also carries its own affinity key.
    pub affinity: bool,
    /// The echo tool's delay for each call: drawn from this range.
    pub delay: (Duration, Duration),
    /// Pause between one caller's calls: drawn from this range.
    pub think: (Duration, Duration),
    /// Callers start calls until this moment.
    pub duration: Duration,
    /// A caller gives up on a call after a time drawn from this range
    /// (`None`: callers never give up).
    pub give_up: Option<(Duration, Duration)>,
    /// The pool shuts down at this moment.
    pub shutdown_at: Option<Duration>,
    /// Faults, in time order.
    pub faults: Vec<(Duration, Fault)>,
    /// From this moment on the backend is reachable again for good (`None`:
    /// it never is after a fault). A scenario without faults recovers at 0.
    pub recovered_at: Option<Duration>,
    /// Link latency range.
    pub latency: (Duration, Duration),
    /// Repair rate of failed links (turmoil's `repair_rate`).
    pub repair_rate: f64,
    /// Pool and connector settings.
    pub settings: Settings,
}

/// The pool and connector settings of a run.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Settings {
    /// The pool's `max_sessions_per_key`.
    pub max_sessions_per_key: usize,
    /// The pool's `acquire_timeout`.
    pub acquire_timeout: Duration,
    /// The pool's `connect_timeout`.
    pub connect_timeout: Duration,
    /// The pool's `check_timeout`.
    pub check_timeout: Duration,
    /// The pool's `check_interval` (zero: check every reuse).
    pub check_interval: Duration,
    /// The pool's `shutdown_timeout`.
    pub shutdown_timeout: Duration,
    /// The connector's `request_timeout`.
    pub request_timeout: Duration,
    /// The simulated HTTP client's TCP connect timeout.
    pub tcp_connect_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_sessions_per_key: 10,
            acquire_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            check_timeout: Duration::from_secs(1),
            check_interval: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(3),
            tcp_connect_timeout: Duration::from_secs(1),
        }
    }
}

impl Settings {
    /// The longest a caller's call may take: two full runs, each an acquire
    /// and a request, plus the connector's grace periods. `run_with_retry`
    /// may run a call more than twice, but only after refusals the server
    /// answers at once (HTTP 404, a refused connection, a transport known
    /// dead), so a call that outlasts two full runs has hung somewhere.
    pub fn call_bound(&self) -> Duration {
        2 * (self.acquire_timeout + self.request_timeout + Duration::from_millis(500))
    }
}

/// SplitMix64: a tiny, seedable generator for drawing plans.
#[derive(Clone, Debug)]
pub struct Draw(u64);

impl Draw {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Draw(seed ^ 0x6a09_e667_f3bc_c909)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A duration drawn uniformly from `lo..=hi`, in whole milliseconds.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let (lo, hi) = (lo.as_millis() as u64, hi.as_millis() as u64);
        if hi <= lo {
            return Duration::from_millis(lo);
        }
        Duration::from_millis(lo + self.next_u64() % (hi - lo + 1))
    }

    /// A duration drawn from the range `range`.
    pub fn within(&mut self, range: (Duration, Duration)) -> Duration {
        self.between(range.0, range.1)
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The eras a backend starts in, in the order seeds take them.
pub const ERAS: [Era; 3] = [Era::Legacy, Era::Modern, Era::LegacyStateless];

/// The era changes of [`Scenario::EraSwap`], in the order seeds take them:
/// (the backend's era before, after).
pub const SWAPS: [(Era, Era); 4] = [
    (Era::Legacy, Era::Modern),
    (Era::Modern, Era::Legacy),
    (Era::Legacy, Era::LegacyStateless),
    (Era::LegacyStateless, Era::Legacy),
];

impl Plan {
    /// The era a backend starts in for `seed`: seeds take [`ERAS`] in
    /// turn (legacy stateful, modern, legacy stateless, legacy stateful,
    /// ...), so any three consecutive seeds meet every era.
    pub fn era_of_seed(seed: u64) -> Era {
        ERAS[(seed % ERAS.len() as u64) as usize]
    }

    /// The era change of [`Scenario::EraSwap`] for `seed`: seeds take
    /// [`SWAPS`] in turn, so any four consecutive seeds meet every change.
    pub fn swap_of_seed(seed: u64) -> (Era, Era) {
        SWAPS[(seed % SWAPS.len() as u64) as usize]
    }

    /// The plan of `scenario` for `seed`.
    pub fn new(scenario: Scenario, seed: u64) -> Plan {
        let mut draw = Draw::new(seed ^ (scenario as u64).wrapping_mul(0x100_0000_01b3));
        let mut plan = Plan {
            scenario,
            seed,
            era: Plan::era_of_seed(seed),
            cache_hint: None,
            list_tools_every: None,
            callers: 10,
            identities: 1,
            affinity: false,
            delay: (ms(100), ms(400)),
            think: (ms(0), ms(100)),
            duration: secs(20),
            give_up: None,
            shutdown_at: None,
            faults: Vec::new(),
            recovered_at: Some(Duration::ZERO),
            latency: (ms(1), ms(5)),
            repair_rate: 0.0,
            settings: Settings::default(),
        };
        match scenario {
            Scenario::Steady => {}
            Scenario::CrashBounce => {
                plan.delay = (ms(500), ms(500));
                plan.think = (ms(0), ms(0));
                let down = draw.between(secs(4), secs(8));
                let up = down + draw.between(secs(2), secs(6));
                plan.faults = vec![(down, Fault::Crash), (up, Fault::Bounce)];
                plan.recovered_at = Some(up);
            }
            Scenario::CrashForever => {
                plan.duration = secs(15);
                let down = draw.between(secs(3), secs(6));
                plan.faults = vec![(down, Fault::Crash)];
                plan.recovered_at = None;
            }
            Scenario::Partition => {
                let cut = draw.between(secs(3), secs(8));
                let heal = cut + draw.between(secs(1), secs(6));
                plan.faults = vec![(cut, Fault::Partition), (heal, Fault::Repair)];
                plan.recovered_at = Some(heal);
            }
            Scenario::Hold => {
                let hold = draw.between(secs(3), secs(8));
                // Shorter and longer than the request timeout.
                let release = hold + draw.between(ms(300), secs(5));
                plan.faults = vec![(hold, Fault::Hold), (release, Fault::Release)];
                plan.recovered_at = Some(release);
            }
            Scenario::Flaky => {
                let start = draw.between(secs(2), secs(5));
                let end = start + draw.between(secs(3), secs(8));
                let rate = [0.001, 0.003, 0.01][(draw.next_u64() % 3) as usize];
                plan.repair_rate = [0.01, 0.05, 0.2][(draw.next_u64() % 3) as usize];
                plan.faults = vec![
                    (start, Fault::FailRate(rate)),
                    (end, Fault::FailRate(0.0)),
                    (end, Fault::Repair),
                ];
                plan.recovered_at = Some(end);
            }
            Scenario::SlowChecks => {
                plan.settings.check_interval = Duration::ZERO;
                plan.settings.check_timeout = ms(150);
                let slow = draw.between(secs(3), secs(6));
                let fast = slow + draw.between(secs(2), secs(6));
                let latency = draw.between(ms(80), ms(200));
                plan.faults = vec![
                    (slow, Fault::Latency(latency)),
                    (fast, Fault::Latency(ms(2))),
                ];
                plan.recovered_at = Some(fast);
            }
            Scenario::Breaker => {
                plan.duration = secs(15);
                let heal = draw.between(secs(2), secs(8));
                plan.faults = vec![(Duration::ZERO, Fault::Partition), (heal, Fault::Repair)];
                plan.recovered_at = Some(heal);
            }
            Scenario::Cancel => {
                plan.delay = (ms(100), ms(400));
                plan.give_up = Some((ms(20), ms(600)));
            }
            Scenario::Shutdown => {
                plan.delay = (ms(200), ms(800));
                plan.duration = secs(15);
                plan.shutdown_at = Some(draw.between(secs(3), secs(8)));
            }
            Scenario::Identities => {
                plan.callers = 12;
                plan.identities = 2 + (draw.next_u64() % 3) as usize;
                plan.affinity = draw.next_u64().is_multiple_of(2);
                plan.settings.max_sessions_per_key = 3;
                plan.cache_hint = Some((
                    draw.between(ms(500), secs(5)).as_millis() as u64,
                    CacheScope::Private,
                ));
                plan.list_tools_every = Some(4);
            }
            Scenario::EraSwap => {
                let (from, to) = Plan::swap_of_seed(seed);
                plan.era = from;
                plan.callers = 12;
                plan.identities = 3;
                plan.duration = secs(15);
                plan.settings.max_sessions_per_key = 4;
                plan.cache_hint = Some((
                    draw.between(ms(500), secs(5)).as_millis() as u64,
                    CacheScope::Private,
                ));
                plan.list_tools_every = Some(3);
                let at = draw.between(secs(4), secs(9));
                plan.faults = vec![(at, Fault::Swap(to))];
                plan.recovered_at = Some(at);
            }
        }
        plan
    }

    /// The eras the backend serves during the run, in order: the first,
    /// then one per [`Fault::Swap`].
    pub fn eras(&self) -> Vec<Era> {
        let swaps = self.faults.iter().filter_map(|(_, f)| match f {
            Fault::Swap(era) => Some(*era),
            _ => None,
        });
        std::iter::once(self.era).chain(swaps).collect()
    }

    /// The backend's eras as one label for reports: `modern`, or
    /// `legacy → modern` for a run whose backend changes era.
    pub fn era_label(&self) -> String {
        self.eras()
            .iter()
            .map(|era| era.name())
            .collect::<Vec<_>>()
            .join(" → ")
    }

    /// Whether the backend can be reached at `t` for good (see
    /// [`Plan::recovered_at`]).
    pub fn recovered_by(&self, t: Duration) -> bool {
        self.recovered_at.is_some_and(|at| t >= at)
    }
}
