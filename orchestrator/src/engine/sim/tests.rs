//! Property tests of the real driver against the in-memory fleet: random fleets, clients
//! writing all along, failed calls, lost and late replies, and crashes (the driver dropped at
//! a call and restarted from the journal), with the invariants checked at every call and at
//! the end. `CUTOVER_SIM_CASES` sets the number of cases (256 by default, fixed seed).

use std::{sync::Arc, time::Duration};

use proptest::{
    prelude::*,
    test_runner::{Config, RngSeed, TestCaseError},
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::engine::{
    board::{Board, now_unix_ms},
    driver::{Command, Driver, Request},
    fleet::{Fleet, hold_timeout},
    journal::UpgradeRecord,
    peer::Token,
    plan::Plan,
};

/// How often a client writes through a proxy (each call of the driver takes 1 ms), for the
/// first [`BUSY_WRITES`] writes of a run.
const CLIENT_INTERVAL: Duration = Duration::from_millis(5);
/// Writes at [`CLIENT_INTERVAL`]; every 250 ms after them.
const BUSY_WRITES: usize = 400;

/// One run's setting.
#[derive(Debug, Clone)]
struct Scenario {
    proxies: usize,
    blue: usize,
    /// Green nodes: any number, whatever blue has (the upgrade is a resize).
    green: usize,
    documents: u32,
    rehearse: bool,
    rollback: bool,
    /// The operator aborts this long after the start, if at all.
    abort_after: Option<Duration>,
    faults: Vec<Fault>,
}

impl Scenario {
    fn plan(&self) -> String {
        let list = |names: Vec<String>| {
            names
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let nodes = |color, n| list((0..n).map(|i| endpoint(color, i)).collect());
        format!(
            "[blue]\nsources = [{}]\n[green]\nsinks = [{}]\n[proxies]\ncontrol = [{}]\n",
            nodes(Color::Blue, self.blue),
            nodes(Color::Green, self.green),
            list(
                (0..self.proxies)
                    .map(|i| format!("http://proxy-{i}:1"))
                    .collect()
            ),
        )
    }
}

/// How a run ended.
#[derive(Debug)]
struct Outcome {
    state: State,
    problems: Vec<String>,
    history: Vec<String>,
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        12 => Just(Fault::None),
        2 => Just(Fault::Fail),
        1 => Just(Fault::LostReply),
        1 => Just(Fault::Timeout),
        1 => Just(Fault::Crash),
        1 => Just(Fault::Lands),
    ]
}

fn scenario(faults: impl Strategy<Value = Fault> + 'static) -> impl Strategy<Value = Scenario> {
    (
        1usize..=3,
        1usize..=3,
        1usize..=3,
        0u32..40,
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.5),
        prop::option::weighted(0.2, 0u64..3_000),
        prop::collection::vec(faults, 0..80),
    )
        .prop_map(
            |(proxies, blue, green, documents, rehearse, rollback, abort, faults)| Scenario {
                proxies,
                blue,
                green,
                documents,
                rehearse,
                rollback: rollback && !rehearse,
                abort_after: abort.map(Duration::from_millis),
                faults,
            },
        )
}

/// The journal's folder: in memory where the machine has one, so the synced writes of
/// thousands of runs stay cheap.
fn journal_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().expect("tempdir")
}

/// Runs `scenario` to its end: until the upgrade is over, or green serves with nothing more
/// asked of it. Clients write through the proxies every [`CLIENT_INTERVAL`] meanwhile; a
/// crash drops the driver and starts a new one on the same journal.
async fn run(scenario: &Scenario) -> Outcome {
    let dir = journal_dir();
    let journal = Arc::new(Journal::open(dir.path()).expect("journal"));
    let world = World::new(
        scenario.proxies,
        scenario.blue,
        scenario.green,
        scenario.documents,
        scenario.faults.clone(),
        Arc::clone(&journal),
    );
    let handles = world.handles();
    let plan_toml = scenario.plan();
    let plan = Plan::parse("sim.toml", &plan_toml).expect("the plan parses");
    let upgrade = UpgradeRecord {
        id: "u1".into(),
        plan_name: "sim.toml".into(),
        plan_toml,
        rehearse: scenario.rehearse,
        started_unix_ms: now_unix_ms(),
    };
    journal.begin(&upgrade).expect("begin");
    let started = tokio::time::Instant::now();
    let mut resumed = false;
    let mut writes = 0usize;
    let mut abort_sent = false;
    let mut rollbacks_sent = 0;
    let mut last_rollback: Option<tokio::time::Instant> = None;
    let mut replies = Vec::new();
    let state = loop {
        let board = Board::load(Arc::clone(&journal)).expect("board");
        let fleet = Fleet {
            proxies: handles.proxies.clone(),
            blue: handles.blue.clone(),
            green: handles.green.clone(),
            blue_token: Token::default(),
            green_token: Token::default(),
            hold: hold_timeout(plan.pause_budget),
        };
        let cancel = CancellationToken::new();
        let driver = Driver::with(
            board.clone(),
            upgrade.clone(),
            plan.clone(),
            fleet,
            Arc::clone(&handles.discovery),
            cancel.clone(),
        );
        let (commands, queue) = mpsc::channel(8);
        let mut task = tokio::spawn(driver.run(queue, resumed));
        resumed = true;
        let crashed = loop {
            tokio::select! {
                _ = &mut task => break false,
                () = world.crashed.notified() => break true,
                // Writes come fast while a handover is likely, then slow down: a run that waits
                // out a 30 s timeout would otherwise spend its time on the harness.
                () = tokio::time::sleep(if writes < BUSY_WRITES {
                    CLIENT_INTERVAL
                } else {
                    Duration::from_millis(250)
                }) => {}
            }
            assert!(
                started.elapsed() < Duration::from_secs(3_600),
                "no end after an hour of simulated time: {}\n{}",
                board.state().name(),
                world.history().join("\n")
            );
            world.client_write(writes % scenario.proxies, &format!("d{}", writes % 50));
            writes += 1;
            let mut send = |command| {
                let (reply, answer) = oneshot::channel();
                let _ = commands.try_send(Request { command, reply });
                replies.push(answer);
            };
            match board.state() {
                State::ReverseSync { .. }
                    if scenario.rollback
                        && rollbacks_sent < 3
                        && last_rollback.is_none_or(|t| t.elapsed() > Duration::from_secs(2)) =>
                {
                    send(Command::Rollback { discard: false });
                    rollbacks_sent += 1;
                    last_rollback = Some(tokio::time::Instant::now());
                }
                State::ReverseSync { .. } if !scenario.rollback || rollbacks_sent >= 3 => {
                    cancel.cancel();
                }
                State::Rehearsed { .. } if !abort_sent => {
                    send(Command::Abort {
                        reason: "rehearsal over".into(),
                    });
                    abort_sent = true;
                }
                _ => {}
            }
            if let Some(after) = scenario.abort_after
                && !abort_sent
                && started.elapsed() >= after
            {
                send(Command::Abort {
                    reason: "window over".into(),
                });
                abort_sent = true;
            }
        };
        if crashed {
            task.abort();
            let _ = task.await;
            // A concurrent copy may have ended the upgrade as another one crashed.
            if !board.state().is_terminal() {
                continue;
            }
        }
        break board.state();
    };
    // Every hold and lease the run left can run out before the end is checked.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let mut problems = world.violations();
    problems.extend(world.check_end(&state));
    let journaled = journal.state().expect("read").map(|r| r.state);
    if journaled.as_ref() != Some(&state) {
        problems.push(format!(
            "the journal holds {journaled:?}, the driver ended in {state:?}"
        ));
    }
    Outcome {
        state,
        problems,
        history: world.history(),
    }
}

fn block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime")
        .block_on(future)
}

fn config() -> Config {
    let cases = std::env::var("CUTOVER_SIM_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256);
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x00c0_7e00),
        failure_persistence: None,
        ..Config::default()
    }
}

fn checked(outcome: &Outcome) -> Result<(), TestCaseError> {
    if outcome.problems.is_empty() {
        return Ok(());
    }
    Err(TestCaseError::fail(format!(
        "ended in {:?}\nproblems:\n{}\ncalls:\n{}",
        outcome.state,
        outcome.problems.join("\n"),
        outcome.history.join("\n")
    )))
}

proptest! {
    #![proptest_config(config())]

    /// Under failed calls, lost and late replies and crashes at any call: no proxy is told to
    /// switch to green before the commit is journaled; blue's fence is permanent whenever the
    /// journal holds a forward commit, and blue is never unfenced after it (but by a
    /// rollback's commit) nor takes a client write; after a rollback's commit green is fenced
    /// and every proxy routes to blue; nothing is called after a terminal state; every
    /// acknowledged write is on the side that serves at the end.
    #[test]
    fn the_invariants_hold_under_faults_and_crashes(scenario in scenario(fault())) {
        let outcome = block_on(run(&scenario));
        checked(&outcome)?;
        prop_assert!(
            outcome.state.is_final(),
            "the run ended in {:?}, not a settled state",
            outcome.state
        );
    }

    /// With crashes as the only faults, a run that was resumed ends where the same run
    /// without crashes ends.
    #[test]
    fn a_resumed_run_ends_like_an_uninterrupted_one(
        scenario in scenario(prop_oneof![6 => Just(Fault::None), 1 => Just(Fault::Crash)])
    ) {
        let scenario = Scenario { abort_after: None, ..scenario };
        let calm = Scenario {
            faults: Vec::new(),
            ..scenario.clone()
        };
        let crashed = block_on(run(&scenario));
        let uninterrupted = block_on(run(&calm));
        checked(&crashed)?;
        checked(&uninterrupted)?;
        prop_assert_eq!(crashed.state.name(), uninterrupted.state.name());
    }
}

#[test]
fn a_plain_run_switches_to_green_and_a_rollback_comes_back_with_every_write() {
    let scenario = Scenario {
        proxies: 2,
        blue: 2,
        green: 3,
        documents: 30,
        rehearse: false,
        rollback: false,
        abort_after: None,
        faults: Vec::new(),
    };
    let forward = block_on(run(&scenario));
    assert!(forward.problems.is_empty(), "{:?}", forward.problems);
    assert_eq!(forward.state.name(), "reverse_sync", "{:?}", forward.state);
    let back = block_on(run(&Scenario {
        rollback: true,
        ..scenario
    }));
    assert!(back.problems.is_empty(), "{:?}", back.problems);
    assert_eq!(back.state.name(), "rolled_back", "{:?}", back.state);
}

/// The series the alert rules read (`deploy/prometheus/rules/cutover.yml`) are set by a
/// real run: the plan's limits, the last decision, the last cycle against its prediction,
/// the dead letters and reverse sync's lag.
#[test]
fn a_plain_run_shows_the_figures_the_alerts_read() {
    let scenario = Scenario {
        proxies: 1,
        blue: 1,
        green: 1,
        documents: 30,
        rehearse: false,
        rollback: false,
        abort_after: None,
        faults: Vec::new(),
    };
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let before = now_unix_ms() as f64 / 1e3;
    // A current-thread runtime: the driver's tasks run on this thread, under this recorder.
    let outcome = metrics::with_local_recorder(&recorder, || block_on(run(&scenario)));
    assert_eq!(outcome.state.name(), "reverse_sync", "{:?}", outcome.state);
    let text = handle.render();
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    };
    assert_eq!(value("cutover_orchestrator_pause_budget_seconds"), 0.5);
    assert_eq!(value("cutover_orchestrator_dead_letters_allowed"), 0.0);
    assert_eq!(value("cutover_orchestrator_dead_letters"), 0.0);
    // The handover began on the last decision: ready, and no other kind.
    assert_eq!(
        value("cutover_orchestrator_decision{kind=\"cutover_ready\"}"),
        1.0
    );
    assert_eq!(
        value("cutover_orchestrator_decision{kind=\"not_converging\"}"),
        0.0
    );
    // The final cycle ran against the prediction that made the decision, which fits the
    // budget.
    assert!(value("cutover_orchestrator_last_cycle_seconds") >= 0.0);
    let predicted = value("cutover_orchestrator_last_cycle_predicted_seconds");
    assert!((0.0..=0.5).contains(&predicted), "{predicted}");
    assert_eq!(value("cutover_orchestrator_reverse_pending_documents"), 0.0);
    assert!(value("cutover_orchestrator_reverse_synced_timestamp_seconds") >= before.floor());
}

/// The generated scenarios reach what the properties are about: most cut over, many roll
/// back, some are aborted or rehearsed, many crash on the way (the tests above would pass
/// vacuously if every case ended early).
#[test]
fn the_scenarios_reach_every_ending() {
    use std::collections::BTreeMap;

    use proptest::{strategy::ValueTree as _, test_runner::TestRunner};

    let mut runner = TestRunner::new(Config {
        rng_seed: RngSeed::Fixed(0x00c0_7e01),
        ..Config::default()
    });
    let strategy = scenario(fault());
    let mut endings: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut crashed = 0;
    const RUNS: usize = 64;
    for _ in 0..RUNS {
        let scenario = strategy
            .new_tree(&mut runner)
            .expect("a scenario")
            .current();
        if scenario.faults.contains(&Fault::Crash) {
            crashed += 1;
        }
        let outcome = block_on(run(&scenario));
        *endings.entry(outcome.state.name()).or_default() += 1;
    }
    let count = |name| endings.get(name).copied().unwrap_or(0);
    assert!(count("reverse_sync") >= RUNS / 4, "{endings:?}");
    assert!(count("rolled_back") >= RUNS / 8, "{endings:?}");
    assert!(count("aborted") >= 1, "{endings:?}");
    assert!(crashed >= RUNS / 4, "{crashed} of {RUNS} runs crash");
}
