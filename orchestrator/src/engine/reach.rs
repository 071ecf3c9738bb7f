//! Whether the plan's nodes and proxies answer: a probe every [`INTERVAL`] while an upgrade
//! is known (its plan is in the journal), shown in the status as `peers`. The operator sees
//! a node or proxy that went away before the driver needs it (a cutover needs every proxy and
//! every node), and the status page and `status` show it.
//!
//! The probe is each peer's own control-plane `Status` call (`NodeAdmin` for nodes,
//! `ProxyControl` for proxies), with the plan's tokens, so "reachable" means "the orchestrator
//! can steer it", not merely "the port is open".

use std::time::Duration;

use cutover_proto::v1::PeerReachability;
use futures_util::future::{BoxFuture, join_all};
use tokio_util::sync::CancellationToken;

use super::{board::Board, board::now_unix_ms, fleet::Fleet, plan::Plan};

/// Time between two probes.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// Longest a peer may take to answer a probe.
const TIMEOUT: Duration = Duration::from_millis(1_500);

/// Probes the peers of the journaled upgrade's plan every [`INTERVAL`] until `cancel` fires,
/// publishing each change on `board`.
pub async fn run(board: Board, cancel: CancellationToken) {
    // The clients of the plan last probed, by upgrade id: built once per upgrade.
    let mut fleet: Option<(String, Fleet)> = None;
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let upgrade_id = board.upgrade_id();
        if upgrade_id.is_empty() {
            continue;
        }
        // The plan is read from the journal once per upgrade, not at every probe.
        if fleet.as_ref().is_none_or(|(id, _)| *id != upgrade_id) {
            let Ok(Some(upgrade)) = board.journal().upgrade() else {
                continue;
            };
            let built = Plan::parse(&upgrade.plan_name, &upgrade.plan_toml)
                .map_err(|e| e.to_string())
                .and_then(|plan| Fleet::from_plan(&plan));
            match built {
                Ok(built) => fleet = Some((upgrade.id, built)),
                Err(error) => {
                    // The plan was accepted at start; a token file removed since is the
                    // likely cause, and the driver will say so when it needs the peer.
                    tracing::debug!(%error, "cannot build the clients to probe the plan's peers");
                    continue;
                }
            }
        }
        let Some((id, peers)) = &fleet else { continue };
        let answers = probe(peers).await;
        board.reachability(id, answers);
    }
}

/// One probe of every peer, all at once: (role, endpoint, error if it did not answer), in
/// plan order (proxies, blue, green).
async fn probe(fleet: &Fleet) -> Vec<(&'static str, String, Option<String>)> {
    type Probe<'a> = BoxFuture<'a, (&'static str, String, Option<String>)>;
    let mut probes: Vec<Probe<'_>> = Vec::new();
    for proxy in &fleet.proxies {
        probes.push(Box::pin(async move {
            let answer = tokio::time::timeout(TIMEOUT, proxy.status()).await;
            ("proxy", proxy.endpoint().to_owned(), error_of(answer))
        }));
    }
    for (role, nodes) in [("blue", &fleet.blue), ("green", &fleet.green)] {
        for node in nodes {
            probes.push(Box::pin(async move {
                let answer = tokio::time::timeout(TIMEOUT, node.status()).await;
                (role, node.endpoint().to_owned(), error_of(answer))
            }));
        }
    }
    join_all(probes).await
}

fn error_of<T, E: std::fmt::Display>(
    answer: Result<Result<T, E>, tokio::time::error::Elapsed>,
) -> Option<String> {
    match answer {
        Ok(Ok(_)) => None,
        Ok(Err(error)) => Some(error.to_string()),
        Err(_) => Some(format!("no answer to Status within {TIMEOUT:?}")),
    }
}

/// The peers shown after a probe: each keeps its `since` while its reachability holds.
pub fn merge(
    shown: &[PeerReachability],
    answers: Vec<(&'static str, String, Option<String>)>,
) -> Vec<PeerReachability> {
    let now = now_unix_ms();
    answers
        .into_iter()
        .map(|(role, endpoint, error)| {
            let reachable = error.is_none();
            let since = shown
                .iter()
                .find(|p| p.role == role && p.endpoint == endpoint && p.reachable == reachable)
                .map_or(now, |p| p.since_unix_ms);
            PeerReachability {
                role: role.to_owned(),
                endpoint,
                reachable,
                error: error.unwrap_or_default(),
                since_unix_ms: since,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_keeps_its_since_while_its_reachability_holds() {
        let first = merge(
            &[],
            vec![
                ("proxy", "http://p".into(), None),
                ("blue", "http://b".into(), Some("refused".into())),
            ],
        );
        assert!(first[0].reachable && !first[1].reachable);
        assert_eq!(first[1].error, "refused");
        let mut shown = first.clone();
        shown[0].since_unix_ms = 1;
        shown[1].since_unix_ms = 2;
        let second = merge(
            &shown,
            vec![
                ("proxy", "http://p".into(), None),
                ("blue", "http://b".into(), None),
            ],
        );
        assert_eq!(second[0].since_unix_ms, 1, "still reachable: same since");
        assert!(second[1].reachable);
        assert!(second[1].since_unix_ms > 2, "came back: a new since");
    }
}
