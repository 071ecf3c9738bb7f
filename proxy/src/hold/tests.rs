use std::time::Duration;

use super::*;

const LIMITS: Limits = Limits {
    max_held: 3,
    max_held_bytes: 1_000,
};

fn forwarded(admission: Admission) -> (Color, InFlight) {
    match admission {
        Admission::Forward(color, in_flight) => (color, in_flight),
        other => panic!("expected Forward, got {other:?}"),
    }
}

fn held(admission: Admission) -> Ticket {
    match admission {
        Admission::Held(ticket) => ticket,
        other => panic!("expected Held, got {other:?}"),
    }
}

#[test]
fn forwards_and_counts_in_flight_until_done() {
    let gate = Gate::new(Color::Blue, LIMITS);
    let (color, first) = forwarded(gate.admit(10));
    let (_, second) = forwarded(gate.admit(0));
    assert_eq!(color, Color::Blue);
    assert_eq!(gate.snapshot().in_flight, 2);
    drop(first);
    drop(second);
    assert_eq!(gate.snapshot().in_flight, 0);
}

#[test]
fn a_hold_is_bounded_in_count_and_bytes() {
    let gate = Gate::new(Color::Blue, LIMITS);
    gate.hold();
    let a = held(gate.admit(600));
    assert!(matches!(
        gate.admit(401),
        Admission::Refused(NotHeld::Bytes)
    ));
    let b = held(gate.admit(400));
    let c = held(gate.admit(0));
    assert!(matches!(gate.admit(0), Admission::Refused(NotHeld::Count)));
    let snapshot = gate.snapshot();
    assert_eq!((snapshot.held, snapshot.held_bytes), (3, 1_000));
    // A client that leaves frees its place and its bytes at once.
    drop(a);
    let snapshot = gate.snapshot();
    assert_eq!((snapshot.held, snapshot.held_bytes), (2, 400));
    let d = held(gate.admit(600));
    drop((b, c, d));
    assert_eq!(gate.snapshot().held, 0);
}

#[tokio::test]
async fn release_forwards_every_held_request_to_the_new_colour() {
    let gate = Gate::new(Color::Blue, LIMITS);
    gate.hold();
    let tickets = [held(gate.admit(1)), held(gate.admit(2))];
    let gone = held(gate.admit(3));
    drop(gone);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let released = gate.release(Color::Green);
    assert_eq!(released.released, 2);
    assert!(
        released.max_hold >= Duration::from_millis(5),
        "{released:?}"
    );
    assert_eq!(gate.snapshot().in_flight, 2);
    for ticket in tickets {
        match ticket.wait().await {
            Release::Forward(color, _done) => assert_eq!(color, Color::Green),
            Release::Expired => panic!("released, not expired"),
        }
    }
    assert_eq!(gate.snapshot().in_flight, 0);
    let (color, _) = forwarded(gate.admit(0));
    assert_eq!(color, Color::Green);
}

#[tokio::test]
async fn expiry_answers_every_held_request_and_forwards_again() {
    let gate = Gate::new(Color::Blue, LIMITS);
    gate.hold();
    let ticket = held(gate.admit(0));
    assert_eq!(gate.expire(), 1);
    assert!(matches!(ticket.wait().await, Release::Expired));
    let snapshot = gate.snapshot();
    assert!(!snapshot.holding);
    assert_eq!((snapshot.held, snapshot.in_flight), (0, 0));
    forwarded(gate.admit(0));
}

#[tokio::test(start_paused = true)]
async fn drained_waits_for_the_last_request_in_flight() {
    let gate = Gate::new(Color::Blue, LIMITS);
    let (_, slow) = forwarded(gate.admit(0));
    gate.hold();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(slow);
    });
    let started = tokio::time::Instant::now();
    gate.drained().await;
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    // Nothing in flight: returns at once.
    gate.drained().await;
}

#[test]
fn many_clients_leaving_do_not_pile_up_in_the_queue() {
    let gate = Gate::new(
        Color::Blue,
        Limits {
            max_held: 10,
            max_held_bytes: u64::MAX,
        },
    );
    gate.hold();
    for _ in 0..10_000 {
        drop(held(gate.admit(1)));
    }
    let queued = gate.lock().queue.len();
    assert!(queued <= 64 + 1, "{queued} entries left behind");
    assert_eq!(gate.snapshot().held, 0);
}

#[tokio::test]
async fn a_stop_inside_a_hold_answers_every_held_and_new_request() {
    let gate = Gate::new(Color::Blue, LIMITS);
    let (_, in_flight) = forwarded(gate.admit(0));
    gate.hold();
    let ticket = held(gate.admit(0));
    gate.stop();
    assert!(matches!(ticket.wait().await, Release::Expired));
    assert!(matches!(
        gate.admit(0),
        Admission::Refused(NotHeld::Stopping)
    ));
    assert_eq!(gate.snapshot().in_flight, 1, "open exchanges finish");
    drop(in_flight);

    let forwarding = Gate::new(Color::Green, LIMITS);
    forwarding.stop();
    assert_eq!(forwarded(forwarding.admit(0)).0, Color::Green);
}

#[tokio::test]
async fn body_bytes_read_while_held_count_until_the_release() {
    let gate = Gate::new(Color::Blue, LIMITS);
    gate.hold();
    let declared = held(gate.admit(300));
    let mut chunked = held(gate.admit(0));
    assert!(chunked.hold_more(600));
    assert!(!chunked.hold_more(200), "300 + 600 + 200 > 1000 bytes");
    assert_eq!(gate.snapshot().held_bytes, 1_100, "read, so counted");
    assert!(matches!(gate.admit(0), Admission::Refused(NotHeld::Bytes)));
    // Leaving frees what was read too.
    drop(chunked);
    assert_eq!(gate.snapshot().held_bytes, 300);
    drop(declared);

    let mut late = held(gate.admit(0));
    gate.release(Color::Green);
    assert!(late.hold_more(10_000), "released: nothing is held any more");
    assert_eq!(gate.snapshot().held_bytes, 0);
    match late.released().await {
        Release::Forward(color, _) => assert_eq!(color, Color::Green),
        other => panic!("expected Forward, got {other:?}"),
    }
    drop(late);
    let snapshot = gate.snapshot();
    assert_eq!((snapshot.held, snapshot.in_flight), (0, 0));
}
