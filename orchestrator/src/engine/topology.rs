//! The copy topology of an N → M upgrade, from what each node says of itself: which
//! partitions it owns and which cluster file it runs with. One pipeline per (blue node, green
//! node) pair that share partitions, pulling exactly those. Pure, so every refusal is tested
//! here with the message an operator reads.

use std::collections::BTreeMap;

use cutover_node::cluster::{Named, Ranges};
use cutover_proto::v1::DescribeResponse;

/// One node of a colour, as discovery described it.
#[derive(Debug, Clone)]
pub struct Member<'a> {
    /// Its endpoint, as in the plan.
    pub endpoint: &'a str,
    /// What it said of itself.
    pub about: &'a DescribeResponse,
}

impl Member<'_> {
    /// The partitions it owns: every one when it lists none (a cluster of one).
    fn owns(&self) -> Vec<u32> {
        if self.about.partitions.is_empty() {
            (0..self.about.partition_count).collect()
        } else {
            self.about.partitions.clone()
        }
    }
}

/// A pipeline of the topology, by the members' indexes in their colour's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Index of the blue node.
    pub blue: usize,
    /// Index of the green node.
    pub green: usize,
    /// The partitions both own, in increasing order; empty when that is every partition
    /// (the pull then needs no filter).
    pub partitions: Vec<u32>,
}

/// The pipelines from `blue` to `green`, or why there can be none: the colours must agree on
/// the partition count, each colour's nodes on their cluster file, and every partition must
/// have exactly one owner on each side. Messages name the plan's list, the endpoints and the
/// partitions.
pub fn routes(blue: &[Member<'_>], green: &[Member<'_>]) -> Result<Vec<Route>, String> {
    let Some(first) = blue.first().or(green.first()) else {
        return Err("blue.sources and green.sinks are empty".to_owned());
    };
    let count = first.about.partition_count;
    for (list, members) in [("blue.sources", blue), ("green.sinks", green)] {
        if members.is_empty() {
            return Err(format!("{list} is empty: list every node of the colour"));
        }
        colour(list, members, count, first.endpoint)?;
    }
    let blue_owners = owners("blue", "blue.sources", blue, count)?;
    let green_owners = owners("green", "green.sinks", green, count)?;
    let mut shared: BTreeMap<(usize, usize), Vec<u32>> = BTreeMap::new();
    for partition in 0..count as usize {
        shared
            .entry((blue_owners[partition], green_owners[partition]))
            .or_default()
            .push(partition as u32);
    }
    Ok(shared
        .into_iter()
        .map(|((blue, green), partitions)| Route {
            blue,
            green,
            partitions: if partitions.len() == count as usize {
                Vec::new()
            } else {
                partitions
            },
        })
        .collect())
}

/// Checks the nodes of one colour: one partition count, one cluster file, no node twice.
fn colour(list: &str, members: &[Member<'_>], count: u32, first: &str) -> Result<(), String> {
    let head = &members[0];
    for (i, member) in members.iter().enumerate() {
        let about = member.about;
        if about.partition_count != count {
            return Err(format!(
                "{list}[{i}]: {} has {} partitions and {first} has {count}: every node of both \
                 colours must have the same partition count (start green with --partitions \
                 {count})",
                member.endpoint, about.partition_count
            ));
        }
        if about.cluster_hash != head.about.cluster_hash {
            return Err(format!(
                "{list}[{i}]: {} runs with cluster file {} and {} with {}: every node of a \
                 colour must run with the same cluster file",
                member.endpoint,
                shown_hash(&about.cluster_hash),
                head.endpoint,
                shown_hash(&head.about.cluster_hash)
            ));
        }
        if let Some(j) = members[..i]
            .iter()
            .position(|m| m.about.node_id == about.node_id)
        {
            return Err(format!(
                "{list}[{i}]: {} is node {} again ({list}[{j}] is {}): list every node once",
                member.endpoint, about.node_id, members[j].endpoint
            ));
        }
        if let Some(bad) = member.owns().into_iter().find(|p| *p >= count) {
            return Err(format!(
                "{list}[{i}]: {} says it owns partition {bad}, beyond its {count} partitions",
                member.endpoint
            ));
        }
    }
    Ok(())
}

fn shown_hash(hash: &str) -> &str {
    if hash.is_empty() {
        "(none: a cluster of one)"
    } else {
        hash
    }
}

/// The owner of every partition, by index in `members`; refused when one has none or two.
fn owners(
    colour: &str,
    list: &str,
    members: &[Member<'_>],
    count: u32,
) -> Result<Vec<usize>, String> {
    let mut owner: Vec<Option<usize>> = vec![None; count as usize];
    let mut twice: BTreeMap<(usize, usize), Vec<u32>> = BTreeMap::new();
    for (i, member) in members.iter().enumerate() {
        for partition in member.owns() {
            match owner[partition as usize] {
                Some(first) => twice.entry((first, i)).or_default().push(partition),
                None => owner[partition as usize] = Some(i),
            }
        }
    }
    if let Some(((a, b), partitions)) = twice.into_iter().next() {
        let hint = if members[a].about.cluster_hash.is_empty() {
            ": each is a cluster of one; start them with one cluster file (`cutover cluster \
             init`), or upgrade them one at a time"
        } else {
            ""
        };
        return Err(format!(
            "{colour}: {} owned by both {} and {} ({list}){hint}",
            partitions_with(&partitions, ("is", "are")),
            members[a].endpoint,
            members[b].endpoint
        ));
    }
    let orphans: Vec<u32> = (0..count)
        .filter(|p| owner[*p as usize].is_none())
        .collect();
    if !orphans.is_empty() {
        return Err(format!(
            "{colour}: {} no owner among {list}: list every node of the {colour} cluster \
             in the plan",
            partitions_with(&orphans, ("has", "have"))
        ));
    }
    Ok(owner.into_iter().map(|o| o.expect("checked")).collect())
}

/// "partition 3 is" or "partitions 0-3,7 are": `partitions` with the verb `(singular, plural)`.
fn partitions_with(partitions: &[u32], (one, many): (&str, &str)) -> String {
    let ranges = Ranges::new(partitions.to_vec());
    let verb = if ranges.len() == 1 { one } else { many };
    format!("{} {verb}", Named(&ranges))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, count: u32, owns: &[u32], hash: &str) -> DescribeResponse {
        DescribeResponse {
            node_id: id.to_owned(),
            partition_count: count,
            partitions: owns.to_vec(),
            cluster_hash: hash.to_owned(),
            ..DescribeResponse::default()
        }
    }

    fn members<'a>(endpoints: &'a [String], nodes: &'a [DescribeResponse]) -> Vec<Member<'a>> {
        endpoints
            .iter()
            .zip(nodes)
            .map(|(endpoint, about)| Member { endpoint, about })
            .collect()
    }

    fn endpoints(colour: &str, n: usize) -> Vec<String> {
        (1..=n)
            .map(|i| format!("http://{colour}-{i}:9000"))
            .collect()
    }

    /// A balanced cluster of `n` nodes over `count` partitions, as `cutover cluster init`
    /// writes it: contiguous ranges.
    fn cluster(colour: &str, n: u32, count: u32) -> Vec<DescribeResponse> {
        (0..n)
            .map(|i| {
                let owns: Vec<u32> = (count * i / n..count * (i + 1) / n).collect();
                node(&format!("{colour}-{i}"), count, &owns, colour)
            })
            .collect()
    }

    fn topology(blue: u32, green: u32, count: u32) -> Result<Vec<Route>, String> {
        let (b, g) = (cluster("blue", blue, count), cluster("green", green, count));
        let (be, ge) = (endpoints("blue", b.len()), endpoints("green", g.len()));
        routes(&members(&be, &b), &members(&ge, &g))
    }

    #[test]
    fn one_to_one_is_one_pipeline_without_a_partition_filter() {
        let (b, g) = (
            [node("b", 8, &[], "")],
            [node("g", 8, &(0..8).collect::<Vec<_>>(), "")],
        );
        let (be, ge) = (endpoints("blue", 1), endpoints("green", 1));
        let routes = routes(&members(&be, &b), &members(&ge, &g)).expect("routes");
        assert_eq!(
            routes,
            vec![Route {
                blue: 0,
                green: 0,
                partitions: vec![]
            }]
        );
    }

    #[test]
    fn each_partition_is_copied_by_exactly_one_pipeline_from_its_owner_to_its_owner() {
        for (blue, green) in [
            (3, 2),
            (2, 3),
            (3, 5),
            (5, 3),
            (1, 4),
            (4, 1),
            (2, 2),
            (7, 3),
        ] {
            let routes = topology(blue, green, 16).expect("routes");
            let b = cluster("blue", blue, 16);
            let g = cluster("green", green, 16);
            let mut seen = vec![0; 16];
            for route in &routes {
                let partitions = if route.partitions.is_empty() {
                    (0..16).collect()
                } else {
                    route.partitions.clone()
                };
                for p in partitions {
                    seen[p as usize] += 1;
                    assert!(b[route.blue].partitions.contains(&p), "{blue}→{green}");
                    assert!(g[route.green].partitions.contains(&p), "{blue}→{green}");
                }
            }
            assert_eq!(seen, vec![1; 16], "{blue} → {green}");
            // Contiguous ranges: a resize needs at most N + M - 1 pipelines.
            assert!(routes.len() < (blue + green) as usize, "{blue} → {green}");
        }
    }

    #[test]
    fn a_partition_without_an_owner_or_with_two_is_refused_by_name() {
        let mut b = cluster("blue", 3, 16);
        b[1].partitions.retain(|p| *p != 7 && *p != 8);
        let g = cluster("green", 2, 16);
        let (be, ge) = (endpoints("blue", 3), endpoints("green", 2));
        let err = routes(&members(&be, &b), &members(&ge, &g)).expect_err("a gap");
        assert_eq!(
            err,
            "blue: partitions 7-8 have no owner among blue.sources: list every node of the blue \
             cluster in the plan"
        );
        let err = routes(&members(&be, &b[..2]), &members(&ge, &g)).expect_err("a node missing");
        assert!(err.contains("partitions 7-8,10-15 have no owner"), "{err}");

        let mut g = cluster("green", 2, 16);
        g[1].partitions.insert(0, 3);
        let err = routes(&members(&be, &cluster("blue", 3, 16)), &members(&ge, &g))
            .expect_err("an overlap");
        assert_eq!(
            err,
            "green: partition 3 is owned by both http://green-1:9000 and http://green-2:9000 \
             (green.sinks)"
        );
    }

    #[test]
    fn two_standalone_nodes_of_a_colour_are_two_owners_of_everything() {
        let b = [node("b1", 4, &[], ""), node("b2", 4, &[], "")];
        let g = [node("g", 4, &[], "")];
        let (be, ge) = (endpoints("blue", 2), endpoints("green", 1));
        let err = routes(&members(&be, &b), &members(&ge, &g)).expect_err("overlap");
        assert!(
            err.starts_with("blue: partitions 0-3 are owned by both http://blue-1:9000 and"),
            "{err}"
        );
        assert!(err.contains("cutover cluster init"), "{err}");
    }

    #[test]
    fn nodes_that_disagree_are_refused() {
        let mut b = cluster("blue", 2, 8);
        b[1].cluster_hash = "other".to_owned();
        let g = cluster("green", 1, 8);
        let (be, ge) = (endpoints("blue", 2), endpoints("green", 1));
        let err = routes(&members(&be, &b), &members(&ge, &g)).expect_err("two files");
        assert_eq!(
            err,
            "blue.sources[1]: http://blue-2:9000 runs with cluster file other and \
             http://blue-1:9000 with blue: every node of a colour must run with the same \
             cluster file"
        );

        let b = cluster("blue", 2, 8);
        let g = cluster("green", 1, 16);
        let err = routes(&members(&be, &b), &members(&ge, &g)).expect_err("two counts");
        assert!(
            err.starts_with(
                "green.sinks[0]: http://green-1:9000 has 16 partitions and http://blue-1:9000 has 8"
            ),
            "{err}"
        );

        let b = [
            node("same", 8, &[0, 1, 2, 3], "h"),
            node("same", 8, &[4, 5, 6, 7], "h"),
        ];
        let err = routes(&members(&be, &b), &members(&ge, &cluster("green", 1, 8)))
            .expect_err("one node twice");
        assert!(err.contains("is node same again"), "{err}");
    }
}
