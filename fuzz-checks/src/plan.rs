//! The upgrade plan: an accepted plan keeps every promise of its check, its endpoints are ones
//! the engine can dial, and its programs compile or are refused without a panic.

use cutover_formats::{plan::Plan, transform::Jq};

const FILE: &str = "plan.toml";

/// Parses `data` as a plan and checks what an accepted one promises.
pub fn plan(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let plan = match Plan::parse(FILE, text) {
        Ok(plan) => plan,
        Err(error) => {
            assert_eq!(error.file, FILE);
            assert!(!error.what.is_empty(), "an error says what is wrong");
            return;
        }
    };
    assert!(!plan.pause_budget.is_zero() && plan.max_cycles > 0 && plan.batch_documents > 0);
    assert!(plan.deadline.is_none_or(|d| !d.is_zero()));
    assert!((1..=cutover_formats::plan::MAX_BATCH_BYTES).contains(&plan.batch_bytes));
    assert!(!plan.blue.sources.is_empty() && !plan.green.sinks.is_empty());
    let endpoints = plan
        .blue
        .sources
        .iter()
        .chain(&plan.green.sinks)
        .chain(&plan.proxies.control);
    for endpoint in endpoints {
        // What the engine does with it (`engine::peer::channel`): a plan must not pass its
        // check and then fail when the upgrade dials it.
        if let Err(error) = cutover_proto::endpoint(endpoint.clone()) {
            panic!("the plan accepted {endpoint:?}, which the engine cannot dial: {error}");
        }
    }
    let mut targets: Vec<&str> = plan
        .collections
        .keys()
        .map(|name| plan.green_name(name))
        .collect();
    targets.sort_unstable();
    assert!(
        targets.windows(2).all(|w| w[0] != w[1]),
        "two collections land in one: {targets:?}"
    );
    for collection in plan.collections.values() {
        // A direction takes a program or a native transform, never both.
        assert!(collection.forward.is_none() || collection.forward_native.is_none());
        assert!(collection.reverse.is_none() || collection.reverse_native.is_none());
        for program in [&collection.forward, &collection.reverse]
            .into_iter()
            .flatten()
        {
            // `engine::check` compiles each; either outcome is fine, a panic is not.
            let _ = Jq::compile(program);
        }
    }
}
