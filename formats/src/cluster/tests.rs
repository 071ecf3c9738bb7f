//! The cluster file: every refusal names its line and partitions; what `balanced` writes
//! reads back; the hash follows the content, not the bytes.

use std::net::SocketAddr;

use super::*;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn address(port: u16) -> Address {
    addr(port).into()
}

fn node(name: &str, port: u16, owns: &str) -> String {
    format!(
        "\n[[node]]\nname = \"{name}\"\nhttp = \"127.0.0.1:{port}\"\ngrpc = \"127.0.0.1:{}\"\nowns = \"{owns}\"\n",
        port + 1
    )
}

/// A file of `partitions` and the nodes (name, owns), on ports 7000, 7010, ….
fn file(partitions: u32, nodes: &[(&str, &str)]) -> String {
    let mut text = format!("partitions = {partitions}\n");
    for (i, (name, owns)) in nodes.iter().enumerate() {
        text.push_str(&node(name, 7000 + 10 * i as u16, owns));
    }
    text
}

fn refusal(text: &str) -> String {
    Cluster::parse(text, "c.toml")
        .expect_err("the file is refused")
        .to_string()
}

#[test]
fn a_good_file_parses_with_every_owner() {
    let cluster =
        Cluster::parse(&file(8, &[("b-1", "0-3"), ("b-2", "4,5, 6-7")]), "c.toml").expect("parses");
    assert_eq!(cluster.partitions(), 8);
    assert_eq!(cluster.owned_by("b-2"), vec![4, 5, 6, 7]);
    assert_eq!(cluster.owner(5).map(|m| m.name.as_str()), Some("b-2"));
    assert_eq!(cluster.owner(0).map(|m| &m.grpc), Some(&address(7001)));
    assert_eq!(cluster.owner(8), None);
    assert_eq!(cluster.member("b-1").map(|m| &m.http), Some(&address(7000)));
    assert!(cluster.member("b-3").is_none());
    assert_eq!(cluster.hash().len(), 16);
}

#[test]
fn a_gap_names_the_partitions_without_an_owner() {
    let message = refusal(&file(12, &[("b-1", "0-7"), ("b-2", "10-11")]));
    assert_eq!(
        message,
        "c.toml: partitions 8-9 have no owner: give them to a node"
    );
    let message = refusal(&file(4, &[("b-1", "0-2")]));
    assert!(message.contains("partition 3 has no owner"), "{message}");
}

#[test]
fn an_overlap_names_the_line_the_partitions_and_both_owners() {
    let text = file(8, &[("b-1", "0-5"), ("b-2", "4-7")]);
    // Line 1 is `partitions`, then each node takes 6 lines from a blank one: b-1's owns is
    // line 7, b-2's line 13.
    assert_eq!(
        refusal(&text),
        "c.toml: line 13: partitions 4-5 are owned by b-1 (line 7) and b-2: give each \
         partition to one node"
    );
}

#[test]
fn a_duplicate_name_names_both_lines() {
    let text = file(8, &[("b-1", "0-3"), ("b-1", "4-7")]);
    assert_eq!(
        refusal(&text),
        "c.toml: line 10: the name b-1 is taken by another node (line 4): names must be unique"
    );
}

#[test]
fn an_unknown_node_name_is_refused_with_the_names_there_are() {
    let cluster =
        Cluster::parse(&file(8, &[("b-1", "0-3"), ("b-2", "4-7")]), "c.toml").expect("parses");
    let message = ClusterConfig::new(cluster.clone(), "b-9")
        .expect_err("not in the file")
        .to_string();
    assert_eq!(
        message,
        "c.toml: no node is named \"b-9\" (the file names b-1, b-2): pass --name with one of them"
    );
    let config = ClusterConfig::new(cluster, "b-2").expect("in the file");
    assert_eq!(config.me().owns, vec![4, 5, 6, 7]);
}

#[test]
fn bad_ranges_are_refused_naming_the_line() {
    for (owns, wanted) in [
        (
            "7-4",
            "line 7: owns = \"7-4\" of b-1: 7-4 runs backwards: write 4-7",
        ),
        (
            "0-3,x",
            "line 7: owns = \"0-3,x\" of b-1: \"x\" is not a partition number",
        ),
        ("", "line 7: owns = \"\" of b-1: an empty item"),
        (
            "0-3,2",
            "line 7: owns of b-1 names partition 2 more than once",
        ),
    ] {
        let message = refusal(&file(4, &[("b-1", owns)]));
        assert!(message.contains(wanted), "{owns}: {message}");
    }
}

#[test]
fn partitions_beyond_the_count_are_refused() {
    let message = refusal(&file(8, &[("b-1", "0-3"), ("b-2", "4-9")]));
    assert_eq!(
        message,
        "c.toml: line 13: b-2 owns partitions 8-9 but the file has partitions = 8 (0 to 7): \
         partitions are numbered from 0"
    );
    let message = refusal(&file(0, &[("b-1", "0")]));
    assert!(
        message.starts_with("c.toml: line 1: partitions = 0"),
        "{message}"
    );
}

#[test]
fn addresses_names_and_fields_are_checked() {
    let shared = "partitions = 2\n".to_owned() + &node("b-1", 7000, "0") + &node("b-2", 7000, "1");
    let message = refusal(&shared);
    assert!(
        message.contains(
            "line 11: the http address 127.0.0.1:7000 of b-2 is also b-1 (http)'s (line 5)"
        ),
        "{message}"
    );
    let bad = file(1, &[("b-1", "0")]).replace("127.0.0.1:7000", "localhost");
    assert!(
        refusal(&bad)
            .contains("line 5: http = \"localhost\" of b-1 is not an address: it has no port")
    );
    let message = refusal(&file(1, &[("b 1", "0")]));
    assert!(
        message.contains("line 4: the node name \"b 1\" is not usable"),
        "{message}"
    );
    let unknown = file(1, &[("b-1", "0")]) + "colour = \"blue\"\n";
    let message = refusal(&unknown);
    assert!(
        message.contains("line 8") && message.contains("colour"),
        "{message}"
    );
    assert_eq!(
        refusal("partitions = 4\n"),
        "c.toml: no [[node]]: a cluster file names at least one node"
    );
    assert!(refusal("partitions = \n").starts_with("c.toml: line 1: "));
}

#[test]
fn a_balanced_cluster_round_trips_through_its_file() {
    let nodes = (0..3)
        .map(|i| (format!("green-{i}"), addr(8000 + i), addr(9000 + i)))
        .collect();
    let cluster = Cluster::balanced(16, nodes).expect("balanced");
    let sizes: Vec<usize> = cluster.members().iter().map(|m| m.owns.len()).collect();
    assert_eq!(sizes, [5, 5, 6]);
    assert_eq!(cluster.owned_by("green-1"), (5..10).collect::<Vec<_>>());
    let text = cluster.to_toml();
    let back = Cluster::parse(&text, "init.toml").expect("parses back");
    assert_eq!(back.members(), cluster.members());
    assert_eq!(back.hash(), cluster.hash());
    assert_eq!(back.source(), "init.toml");

    let too_many = (0..3)
        .map(|i| (format!("n{i}"), addr(8000 + i), addr(9000 + i)))
        .collect();
    let message = Cluster::balanced(2, too_many)
        .expect_err("3 nodes, 2 partitions")
        .to_string();
    assert_eq!(
        message,
        "the cluster: n0 owns no partition: give it some, or remove it"
    );
}

#[test]
fn the_hash_follows_the_content_not_the_bytes() {
    let plain = file(8, &[("b-1", "0-3"), ("b-2", "4-7")]);
    let hash = Cluster::parse(&plain, "a")
        .expect("parses")
        .hash()
        .to_owned();
    let reordered = format!(
        "# the blue cluster\npartitions    =   8 # P\n{}{}",
        node("b-2", 7010, "7,4-6"),
        node("b-1", 7000, "0,1,2,3")
    );
    let same = Cluster::parse(&reordered, "b").expect("parses");
    assert_eq!(
        same.hash(),
        hash,
        "comments, spacing, order and range spelling"
    );
    for changed in [
        file(8, &[("b-1", "0-4"), ("b-2", "5-7")]),
        file(8, &[("b-1", "0-3"), ("b-3", "4-7")]),
        file(8, &[("b-1", "0-3"), ("b-2", "4-7")]).replace("7010", "7020"),
    ] {
        let other = Cluster::parse(&changed, "c").expect("parses");
        assert_ne!(other.hash(), hash, "{changed}");
    }
    let single = Cluster::single(8, "alone", addr(1), addr(2)).expect("single");
    assert_eq!(single.hash(), "");
    assert_eq!(single.owned_by("alone"), (0..8).collect::<Vec<_>>());
}

#[test]
fn hosts_may_be_dns_names_or_ipv6() {
    let text = "partitions = 2\n\n[[node]]\nname = \"blue-0\"\nhttp = \"blue-0.blue.ns.svc.cluster.local:7070\"\n\
                grpc = \"Blue-0.Blue:7071\"\nowns = \"0\"\n\n[[node]]\nname = \"blue-1\"\n\
                http = \"[fd00::1]:7070\"\ngrpc = \"localhost:7071\"\nowns = \"1\"\n";
    let cluster = Cluster::parse(text, "c.toml").expect("names and IPv6 parse");
    let [zero, one] = cluster.members() else {
        panic!("two nodes")
    };
    assert_eq!(
        zero.http.dns_name(),
        Some("blue-0.blue.ns.svc.cluster.local")
    );
    assert_eq!(
        zero.grpc.to_string(),
        "Blue-0.Blue:7071",
        "shown as written"
    );
    assert_eq!(
        one.http.ip(),
        Some("[fd00::1]:7070".parse().expect("an addr"))
    );
    assert_eq!(one.grpc.dns_name(), Some("localhost"));
    let back = Cluster::parse(&cluster.to_toml(), "back.toml").expect("parses back");
    assert_eq!(back.members(), cluster.members());
    assert_eq!(back.hash(), cluster.hash());
    // The case of a name is not content; the name itself is.
    let lower = Cluster::parse(&text.replace("Blue-0.Blue", "blue-0.blue"), "c").expect("parses");
    assert_eq!(lower.hash(), cluster.hash());
    let other = Cluster::parse(&text.replace("Blue-0.Blue", "blue-2.blue"), "c").expect("parses");
    assert_ne!(other.hash(), cluster.hash());
}

#[test]
fn a_bad_host_or_port_is_refused_naming_the_line_and_the_problem() {
    let long = "a".repeat(64);
    for (value, wanted) in [
        (
            "bad_host!:70".to_owned(),
            "c.toml: line 5: http = \"bad_host!:70\" of b-1 is not an address: the host \
             \"bad_host!\" has '_', which no DNS name has: a name is letters, digits, hyphens \
             and dots; or give an IP address"
                .to_owned(),
        ),
        (
            ":70".to_owned(),
            "c.toml: line 5: http = \":70\" of b-1 is not an address: the host is empty: write \
             HOST:PORT, like 10.0.0.1:7070, [fd00::1]:7070 or blue-0.blue:7070"
                .to_owned(),
        ),
        (
            "blue-0.blue:0".to_owned(),
            "c.toml: line 5: http = \"blue-0.blue:0\" of b-1 is not an address: the port \"0\" \
             is not a number from 1 to 65535"
                .to_owned(),
        ),
        (
            "blue-0.blue:70000".to_owned(),
            "c.toml: line 5: http = \"blue-0.blue:70000\" of b-1 is not an address: the port \
             \"70000\" is not a number from 1 to 65535"
                .to_owned(),
        ),
        (
            format!("{long}.blue:70"),
            format!(
                "c.toml: line 5: http = \"{long}.blue:70\" of b-1 is not an address: the label \
                 \"{long}\" of the host has 64 characters: a DNS label has 1 to 63"
            ),
        ),
        (
            "::1:70".to_owned(),
            "c.toml: line 5: http = \"::1:70\" of b-1 is not an address: the host \"::1\" has a \
             ':': write an IPv6 address in brackets, like [::1]:7070"
                .to_owned(),
        ),
    ] {
        let text = file(1, &[("b-1", "0")]).replace("127.0.0.1:7000", &value);
        assert_eq!(refusal(&text), wanted, "{value}");
    }
}

#[test]
fn addresses_that_differ_only_in_case_are_one_address() {
    let text = "partitions = 2\n\n[[node]]\nname = \"a\"\nhttp = \"blue-0.blue:7070\"\n\
                grpc = \"blue-0.blue:7071\"\nowns = \"0\"\n\n[[node]]\nname = \"b\"\n\
                http = \"Blue-0.Blue:7070\"\ngrpc = \"blue-1.blue:7071\"\nowns = \"1\"\n";
    assert_eq!(
        refusal(text),
        "c.toml: line 11: the http address Blue-0.Blue:7070 of b is also a (http)'s (line 5): \
         each service needs its own address"
    );
}

#[test]
fn the_hash_of_a_file_of_ips_is_what_it_was_before_names() {
    // The canonical form the hash was made of when addresses were `SocketAddr`s.
    let canonical = "cutover-cluster 1\npartitions 8\n\
                     node b-1 http 127.0.0.1:7000 grpc 127.0.0.1:7001 owns 0-3\n\
                     node b-2 http 127.0.0.1:7010 grpc 127.0.0.1:7011 owns 4-7\n";
    let before = format!("{:016x}", xxh3_64(canonical.as_bytes()));
    let reordered = format!(
        "partitions = 8\n{}{}",
        node("b-2", 7010, "4-7"),
        node("b-1", 7000, "0-3")
    );
    let cluster = Cluster::parse(&reordered, "c.toml").expect("parses");
    assert_eq!(cluster.hash(), before);
    assert_eq!(cluster.hash(), HASH_OF_TWO_LOOPBACK_NODES);
    let v6 = file(8, &[("b-1", "0-3"), ("b-2", "4-7")]).replace("127.0.0.1", "[0:0::1]");
    let canonical = canonical.replace("127.0.0.1", "[::1]");
    let hash = Cluster::parse(&v6, "c.toml")
        .expect("parses")
        .hash()
        .to_owned();
    assert_eq!(hash, format!("{:016x}", xxh3_64(canonical.as_bytes())));
}

/// A test vector: the hash of `file(8, [b-1 0-3, b-2 4-7])`, b-1 on 127.0.0.1:7000 and 7001,
/// b-2 on 7010 and 7011.
const HASH_OF_TWO_LOOPBACK_NODES: &str = "bbb1f2b2dd4dd477";
