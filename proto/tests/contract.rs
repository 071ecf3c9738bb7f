//! The contract is documentation: every service, method, message, field, oneof, enum and
//! enum value carries a comment, and the embedded descriptor set describes all five services.

use prost::Message;
use prost_types::{FileDescriptorProto, FileDescriptorSet, SourceCodeInfo, source_code_info};

const PROTOS: &[&str] = &[
    "cutover/v1/common.proto",
    "cutover/v1/source.proto",
    "cutover/v1/sink.proto",
    "cutover/v1/node_admin.proto",
    "cutover/v1/proxy_control.proto",
    "cutover/v1/orchestrator.proto",
];

// Field numbers of descriptor.proto, which source-code-info paths are made of.
const FILE_MESSAGE: i32 = 4;
const FILE_ENUM: i32 = 5;
const FILE_SERVICE: i32 = 6;
const MESSAGE_FIELD: i32 = 2;
const MESSAGE_NESTED: i32 = 3;
const MESSAGE_ENUM: i32 = 4;
const MESSAGE_ONEOF: i32 = 8;
const ENUM_VALUE: i32 = 2;
const SERVICE_METHOD: i32 = 2;

fn commented(info: &SourceCodeInfo, path: &[i32]) -> bool {
    info.location
        .iter()
        .find(|l: &&source_code_info::Location| l.path == path)
        .and_then(|l| l.leading_comments.as_deref())
        .is_some_and(|c| !c.trim().is_empty())
}

fn check_enum(
    info: &SourceCodeInfo,
    path: Vec<i32>,
    e: &prost_types::EnumDescriptorProto,
    missing: &mut Vec<String>,
) {
    if !commented(info, &path) {
        missing.push(format!("enum {}", e.name()));
    }
    for (i, value) in e.value.iter().enumerate() {
        if !commented(info, &[path.as_slice(), &[ENUM_VALUE, i as i32]].concat()) {
            missing.push(format!("enum value {}", value.name()));
        }
    }
}

fn check_message(
    info: &SourceCodeInfo,
    path: Vec<i32>,
    m: &prost_types::DescriptorProto,
    missing: &mut Vec<String>,
) {
    let at = |kind: i32, i: usize| [path.as_slice(), &[kind, i as i32]].concat();
    if !commented(info, &path) {
        missing.push(format!("message {}", m.name()));
    }
    for (i, field) in m.field.iter().enumerate() {
        if !commented(info, &at(MESSAGE_FIELD, i)) {
            missing.push(format!("field {}.{}", m.name(), field.name()));
        }
    }
    for (i, oneof) in m.oneof_decl.iter().enumerate() {
        if !commented(info, &at(MESSAGE_ONEOF, i)) {
            missing.push(format!("oneof {}.{}", m.name(), oneof.name()));
        }
    }
    for (i, nested) in m.nested_type.iter().enumerate() {
        check_message(info, at(MESSAGE_NESTED, i), nested, missing);
    }
    for (i, e) in m.enum_type.iter().enumerate() {
        check_enum(info, at(MESSAGE_ENUM, i), e, missing);
    }
}

fn undocumented(file: &FileDescriptorProto) -> Vec<String> {
    let info = file.source_code_info.clone().unwrap_or_default();
    let mut missing = Vec::new();
    for (i, m) in file.message_type.iter().enumerate() {
        check_message(&info, vec![FILE_MESSAGE, i as i32], m, &mut missing);
    }
    for (i, e) in file.enum_type.iter().enumerate() {
        check_enum(&info, vec![FILE_ENUM, i as i32], e, &mut missing);
    }
    for (i, s) in file.service.iter().enumerate() {
        if !commented(&info, &[FILE_SERVICE, i as i32]) {
            missing.push(format!("service {}", s.name()));
        }
        for (j, method) in s.method.iter().enumerate() {
            if !commented(&info, &[FILE_SERVICE, i as i32, SERVICE_METHOD, j as i32]) {
                missing.push(format!("rpc {}.{}", s.name(), method.name()));
            }
        }
    }
    missing
}

#[test]
fn every_element_of_the_contract_is_documented() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"));
    let fds = protox::Compiler::new([root])
        .expect("proto root")
        .include_source_info(true)
        .open_files(PROTOS)
        .expect("the contract compiles")
        .file_descriptor_set();
    let mut missing = Vec::new();
    for file in fds.file.iter().filter(|f| f.name().starts_with("cutover/")) {
        missing.extend(
            undocumented(file)
                .into_iter()
                .map(|m| format!("{}: {m}", file.name())),
        );
    }
    assert!(missing.is_empty(), "undocumented:\n{}", missing.join("\n"));
}

#[test]
fn the_embedded_descriptor_set_describes_every_service() {
    let fds = FileDescriptorSet::decode(cutover_proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    let mut services: Vec<String> = fds
        .file
        .iter()
        .flat_map(|f| f.service.iter().map(|s| s.name().to_owned()))
        .collect();
    services.sort();
    assert_eq!(
        services,
        [
            "NodeAdmin",
            "Orchestrator",
            "Pipelines",
            "ProxyControl",
            "Sink",
            "Source"
        ]
    );
}

#[test]
fn a_missing_comment_is_detected() {
    let fds = protox::Compiler::new([env!("CARGO_MANIFEST_DIR")])
        .expect("proto root")
        .include_source_info(false)
        .open_files(["cutover/v1/common.proto"])
        .expect("compiles")
        .file_descriptor_set();
    let file = fds
        .file
        .iter()
        .find(|f| f.name() == "cutover/v1/common.proto")
        .expect("common");
    assert!(
        undocumented(file)
            .iter()
            .any(|m| m.contains("field Document.id")),
        "without source info every element counts as undocumented"
    );
}
