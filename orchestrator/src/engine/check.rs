//! The whole check of a plan before an upgrade or a dry run starts: the TOML parsed strictly
//! and checked ([`Plan::parse`]), then every program compiled and every native transform
//! looked up, both ways (a reverse program that does not compile would otherwise surface only
//! after the switch, in reverse sync). The engine runs it on `Start` and on a dry run, with
//! the native transforms of its process; `cutover plan check` runs it without any daemon, and
//! leaves the native transforms to the engine ([`Resolve::Later`]): one function, so the
//! offline and the online check cannot disagree on anything else.

use super::{
    plan::{Plan, PlanError},
    routes::{Resolve, Routes},
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

/// Checks `plan_toml`, read from `plan_name` (which every error names), its native
/// transforms looked up in `natives`.
pub fn check<'a>(
    plan_name: &str,
    plan_toml: &str,
    natives: impl Into<Resolve<'a>>,
) -> Result<CheckedPlan, PlanError> {
    let natives = natives.into();
    let plan = Plan::parse(plan_name, plan_toml)?;
    let refused = |error: super::routes::CompileError| PlanError {
        file: plan_name.to_owned(),
        what: error.to_string(),
    };
    let reverse = Routes::reverse(&plan, natives).map_err(refused)?;
    let forward = Routes::forward(&plan, natives).map_err(refused)?;
    Ok(CheckedPlan {
        plan,
        forward,
        reverse,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::transform::{Identity, Natives, Runner};

    const NODES: &str = "[blue]\nsources = [\"http://a:1\"]\n[green]\nsinks = [\"http://b:1\"]\n";

    fn refused(collections: &str) -> String {
        check(
            "plan.toml",
            &format!("{NODES}{collections}"),
            &Natives::new(),
        )
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
            &Natives::new(),
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
        let error = check("p.toml", "[blue]\nsources = []\n", Resolve::Later).expect_err("refused");
        assert_eq!(error.file, "p.toml");
        assert!(error.what.contains("missing field `green`"), "{error}");
    }

    #[test]
    fn native_transforms_are_looked_up_now_by_the_engine_and_later_offline() {
        let plan = format!(
            "{NODES}[collections.users]\nforward_native = \"split_name\"\n\
             reverse_native = \"join_name\"\n"
        );
        let offline = check("plan.toml", &plan, Resolve::Later).expect("any name, offline");
        assert_eq!(
            offline.forward.transform("users").describe(),
            "native `split_name` (resolved by the engine that runs the plan)"
        );
        let only_forward = Natives::new().with("split_name", Arc::new(Identity));
        let error = check("plan.toml", &plan, &only_forward).expect_err("join_name unknown");
        assert!(
            error.to_string().starts_with(
                "plan.toml: collections.users.reverse_native: no native transform `join_name` \
                 is registered in this process (registered: `split_name`)"
            ),
            "{error}"
        );
        let both = only_forward.with("join_name", Arc::new(Identity));
        let checked = check("plan.toml", &plan, &both).expect("both registered");
        assert!(!checked.reverse.skips("users"));
    }
}
