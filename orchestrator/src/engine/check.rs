//! The whole check of a plan before an upgrade or a dry run starts: the TOML parsed strictly
//! and checked ([`Plan::parse`]), then every program compiled, both ways (a reverse program
//! that does not compile would otherwise surface only after the switch, in reverse sync).
//! The engine runs it on `Start` and on a dry run, and `cutover plan check` runs it without
//! any daemon: one function, so the offline and the online check cannot disagree.

use super::{
    plan::{Plan, PlanError},
    routes::{CompileError, Routes},
};

/// A plan that passed the check, with its compiled programs.
#[derive(Debug, Clone)]
pub struct CheckedPlan {
    /// The plan.
    pub plan: Plan,
    /// The forward programs, by blue collection.
    pub forward: Routes,
    /// The reverse programs, by green collection.
    pub reverse: Routes,
}

/// Checks `plan_toml`, read from `plan_name` (which every error names).
pub fn check(plan_name: &str, plan_toml: &str) -> Result<CheckedPlan, PlanError> {
    let plan = Plan::parse(plan_name, plan_toml)?;
    let refused = |CompileError { field, message }| PlanError {
        file: plan_name.to_owned(),
        what: format!("{field}: the jq program does not compile: {message}"),
    };
    let reverse = Routes::reverse(&plan).map_err(refused)?;
    let forward = Routes::forward(&plan).map_err(refused)?;
    Ok(CheckedPlan {
        plan,
        forward,
        reverse,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::transform::Runner;

    const NODES: &str = "[blue]\nsources = [\"http://a:1\"]\n[green]\nsinks = [\"http://b:1\"]\n";

    fn refused(collections: &str) -> String {
        check("plan.toml", &format!("{NODES}{collections}"))
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn a_valid_plan_comes_back_compiled_both_ways() {
        let checked = check(
            "plan.toml",
            &format!(
                "{NODES}[collections.users]\nforward = '.schema = 2'\nreverse = 'del(.schema)'\n\
                 rename = \"people\"\n[collections.orders]\nforward = 'select(.ref | test(\"^A\"))'\n"
            ),
        )
        .expect("valid");
        assert_eq!(checked.plan.green_name("users"), "people");
        assert_eq!(checked.forward.target("users"), "people");
        assert_eq!(
            checked.forward.transform("users").runner(),
            Runner::FastPath
        );
        assert_eq!(checked.forward.transform("orders").runner(), Runner::Jaq);
        assert_eq!(checked.reverse.target("people"), "users");
        assert_eq!(
            checked.reverse.transform("people").runner(),
            Runner::FastPath
        );
        assert!(checked.reverse.skips("orders"), "no reverse program");
    }

    #[test]
    fn a_program_that_does_not_compile_names_its_field() {
        let forward = refused("[collections.users]\nforward = '.a |'\n");
        assert!(
            forward.starts_with(
                "plan.toml: collections.users.forward: the jq program does not compile: line 1"
            ),
            "{forward}"
        );
        let reverse = refused("[collections.users]\nforward = '.a = 1'\nreverse = 'del(.a'\n");
        assert!(
            reverse.starts_with(
                "plan.toml: collections.users.reverse: the jq program does not compile"
            ),
            "{reverse}"
        );
        let undefined = refused("[collections.users]\nforward = 'nope(1)'\n");
        assert!(undefined.contains("undefined filter `nope`"), "{undefined}");
    }

    #[test]
    fn the_plan_itself_is_checked_first() {
        let error = check("p.toml", "[blue]\nsources = []\n").expect_err("refused");
        assert_eq!(error.file, "p.toml");
        assert!(error.what.contains("missing field `green`"), "{error}");
    }
}
