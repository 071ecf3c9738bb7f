//! Whether the other nodes of the cluster were started with the same cluster file: every
//! second each peer's `Source.Describe` is asked for its hash. A node that knows a peer
//! disagrees is not ready (`/readyz`), so a rollout with a stale file stops there. A peer
//! that does not answer changes nothing (it is logged): a node down is the proxies' and the
//! orchestrator's business, not a reason for the others to stop serving; so is a peer whose
//! name does not resolve. A peer named by DNS is looked up again whenever its channel
//! reconnects (tonic resolves the `http://HOST:PORT` endpoint itself), so a peer that comes
//! back at another IP is heard again.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use cutover_proto::v1::{DescribeRequest, source_client::SourceClient};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use super::ClusterConfig;
use crate::metrics as m;

/// How often every peer is asked.
const INTERVAL: Duration = Duration::from_secs(1);
/// How long a peer may take to connect and answer.
const TIMEOUT: Duration = Duration::from_secs(1);

/// What a peer said last.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Heard {
    Agrees,
    /// Its hash.
    Disagrees(String),
    /// It did not answer; why.
    Silent(String),
}

/// The peers' agreement on the cluster file, as last heard. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Agreement {
    mine: Arc<str>,
    heard: Arc<Mutex<BTreeMap<String, Heard>>>,
}

impl Agreement {
    /// Starts asking every peer of `config` each second until `cancel` fires.
    pub fn spawn(config: &ClusterConfig, cancel: CancellationToken) -> (Self, JoinHandle<()>) {
        let agreement = Self {
            mine: config.cluster().hash().into(),
            heard: Arc::default(),
        };
        let peers: Vec<(String, SourceClient<Channel>)> = config
            .cluster()
            .members()
            .iter()
            .filter(|m| m.name != config.name())
            .map(|m| {
                // Over TLS when this node was given a CA to verify its peers with.
                let tls = cutover_daemon::tls::ClientTls::current();
                let address = format!("{}://{}", tls.peer_scheme(), m.grpc);
                let endpoint = Endpoint::from_shared(address.clone())
                    .expect("a checked HOST:PORT makes a valid URI")
                    .connect_timeout(TIMEOUT)
                    .timeout(TIMEOUT);
                let channel = tls
                    .endpoint(endpoint.clone(), &address)
                    .unwrap_or(endpoint)
                    .connect_lazy();
                (m.name.clone(), SourceClient::new(channel))
            })
            .collect();
        let task = tokio::spawn(agreement.clone().run(peers, cancel));
        (agreement, task)
    }

    /// Why this node is not ready, when a peer is known to have another cluster file.
    pub fn disagreement(&self) -> Option<String> {
        let heard = self.heard.lock().unwrap_or_else(PoisonError::into_inner);
        let found: Vec<String> = heard
            .iter()
            .filter_map(|(peer, heard)| match heard {
                Heard::Disagrees(theirs) => Some(format!("{peer} has cluster hash {theirs:?}")),
                _ => None,
            })
            .collect();
        (!found.is_empty()).then(|| {
            format!(
                "{}, this node has {:?}: start every node of the colour with the same cluster file",
                found.join(", "),
                self.mine
            )
        })
    }

    async fn run(self, peers: Vec<(String, SourceClient<Channel>)>, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let mine: &str = &self.mine;
            let asked = peers.iter().map(|(name, client)| async move {
                let mut client = client.clone();
                let heard = match client.describe(DescribeRequest {}).await {
                    Ok(answer) if answer.get_ref().cluster_hash == mine => Heard::Agrees,
                    Ok(answer) => Heard::Disagrees(answer.into_inner().cluster_hash),
                    Err(status) => Heard::Silent(status.message().to_owned()),
                };
                (name, heard)
            });
            let answers = futures_util::future::join_all(asked).await;
            let mut disagreeing = 0;
            let mut heard = self.heard.lock().unwrap_or_else(PoisonError::into_inner);
            for (peer, now) in answers {
                if matches!(now, Heard::Disagrees(_)) {
                    disagreeing += 1;
                }
                let before = heard.insert(peer.clone(), now.clone());
                if before.as_ref() != Some(&now) {
                    log_change(peer, &self.mine, &now);
                }
            }
            metrics::gauge!(m::PEERS_DISAGREEING).set(f64::from(disagreeing));
        }
    }
}

/// One line when what a peer says changes (not every second).
fn log_change(peer: &str, mine: &str, now: &Heard) {
    match now {
        Heard::Agrees => tracing::info!(peer, "peer agrees on the cluster file"),
        Heard::Disagrees(theirs) => tracing::warn!(
            peer,
            theirs = %theirs,
            mine = %mine,
            "peer has another cluster file: not ready until every node has the same one"
        ),
        Heard::Silent(error) => tracing::warn!(
            peer,
            %error,
            "peer does not answer Describe; requests for its partitions get 503"
        ),
    }
}
