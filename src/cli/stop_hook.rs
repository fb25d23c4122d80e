//! `stop-hook --deployment NAME --unit UNIT`: what the `ExecStopPost=`
//! drop-in runs (see [`crate::auto::stop_hook`]).

use super::args::StopHookArgs;
use super::GlobalArgs;
use crate::auto::stop_hook::{self, HookOutcome, Policy, SystemEnv};
use crate::auto::stop_hook_dropin;
use crate::backup::interrupted;
use crate::backup::metadata::StopResult;
use crate::config::Config;
use crate::context::Context;
use crate::deployment;
use crate::error::Result;
use crate::layout::Layout;

/// Run the stop hook. Skips exit 0; a failed backup (or a check that could
/// not be made) exits non-zero so that systemd logs it — the `-` in
/// `ExecStopPost=-` keeps it from marking the unit failed. Every outcome is
/// logged to stderr (the journal) and recorded for `status`.
pub fn run(global: &GlobalArgs, args: StopHookArgs) -> Result<()> {
    let scope = global.scope();
    let layout = Layout::for_scope(scope)?;
    deployment::validate_name(&args.deployment)?;
    let trigger = format!("stop-hook {}", args.unit);
    let outcome = decide(&layout, &args);
    stop_hook::report(&layout.state_dir, &args.deployment, &trigger, &outcome)
}

fn decide(layout: &Layout, args: &StopHookArgs) -> HookOutcome {
    let config = match Config::load(layout) {
        Ok(config) => config,
        Err(err) => return HookOutcome::Failed(err.message),
    };
    let found = match deployment::lookup(layout, &args.deployment) {
        Ok(found) => found,
        Err(err) => {
            return HookOutcome::Failed(format!("cannot list deployments: {}", err.message))
        }
    };
    let Some(deployment) = found else {
        return HookOutcome::Skipped(format!(
            "deployment {} is not installed any more",
            args.deployment
        ));
    };
    let services = match stop_hook_dropin::deployment_services(&deployment, layout) {
        Ok(s) => s.names,
        Err(err) => {
            return HookOutcome::Failed(format!(
                "cannot read the deployment's files: {}",
                err.message
            ))
        }
    };
    let others: Vec<String> = services.into_iter().filter(|s| *s != args.unit).collect();
    let auto = &config.auto;
    let policy = Policy {
        enabled: auto.enabled_for(&deployment.name),
        on_shutdown: auto.on_shutdown.value,
        coalesce: auto.coalesce_seconds.value,
        min_interval: auto.min_interval.value,
        // Leave a quarter of TimeoutStopSec= for our own backup.
        turn_wait: auto.stop_timeout.value.duration() * 3 / 4,
    };
    let ctx = Context::new(layout.clone(), config);
    // A stop hook killed by TimeoutStopSec= is cleaned up by the next one
    // (services are never started from a stop hook).
    interrupted::startup(&ctx, interrupted::Mode::StopHook);
    let env = SystemEnv {
        ctx: &ctx,
        deployment: &deployment,
        unit: &args.unit,
        stop_result: stop_result_from_env(),
    };
    stop_hook::run_hook(&env, &policy, &others)
}

/// What systemd tells `ExecStopPost=` about how the service ended.
fn stop_result_from_env() -> Option<StopResult> {
    let var = |name: &str| std::env::var(name).ok();
    StopResult::from_systemd(
        var("SERVICE_RESULT").as_deref(),
        var("EXIT_CODE").as_deref(),
        var("EXIT_STATUS").as_deref(),
    )
}
