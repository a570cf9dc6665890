//! Each needed source file read once, streamed to every destination that lacks it, committed only
//! when verified, then checked with a HEAD.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ferry_report::Progress;
use ferry_store::copy_object;
use futures::stream::{self, StreamExt};
use tokio::sync::Semaphore;

use crate::plan::{Action, Job, Plan};
use crate::{Counters, Stores};

/// Copies every job that has a target to copy, `concurrency` files at a time, and only as many
/// as fit in `memory_budget` bytes of buffered uploads (see [`ferry_store::Store::upload_buffer`]; a file
/// larger than the whole budget takes all of it). Returns the error of each target (by index into
/// `plan.targets`) that failed.
pub async fn execute(
    plan: &Plan,
    stores: &Stores,
    concurrency: usize,
    memory_budget: u64,
    progress: &Arc<dyn Progress>,
    counters: &Counters,
) -> HashMap<usize, String> {
    let mut jobs: Vec<&Job> = plan.jobs.iter().filter(|j| plan.needs_copy(j)).collect();
    // Largest first: a big file started last would leave the other cores idle at the end.
    jobs.sort_by_key(|j| std::cmp::Reverse(j.size));
    progress.total(plan.bytes_to_read());
    let files = jobs.len();
    let done = AtomicU64::new(0);
    let budget_mib = memory_budget.div_ceil(MIB).clamp(1, u64::from(u32::MAX)) as u32;
    let budget = Semaphore::new(budget_mib as usize);
    stream::iter(jobs)
        .map(|job| async {
            let buffered = buffered_by(plan, job, stores);
            let weight = buffered.div_ceil(MIB).min(u64::from(budget_mib)) as u32;
            let _memory = budget.acquire_many(weight).await.expect("the budget is never closed");
            let failed = copy_job(plan, job, stores, progress, counters).await;
            let done = done.fetch_add(1, Ordering::Relaxed) + 1;
            progress.phase(&format!("copying, {done}/{files} files"));
            failed
        })
        .buffer_unordered(concurrency.max(1))
        .flat_map(stream::iter)
        .collect()
        .await
}

const MIB: u64 = 1 << 20;

/// The most memory copying `job` holds at once: its cloud destinations share the chunks read, so
/// the largest of theirs.
fn buffered_by(plan: &Plan, job: &Job, stores: &Stores) -> u64 {
    job.targets
        .iter()
        .filter(|&&i| matches!(plan.targets[i].action, Action::Copy | Action::Overwrite))
        .map(|&i| stores.get(&plan.targets[i].destination).upload_buffer(job.size.unwrap_or(u64::MAX)))
        .max()
        .unwrap_or(0)
}

/// One source read for all of `job`'s targets that need it; the errors of those that failed.
async fn copy_job(
    plan: &Plan,
    job: &Job,
    stores: &Stores,
    progress: &Arc<dyn Progress>,
    counters: &Counters,
) -> Vec<(usize, String)> {
    let needed: Vec<usize> = job
        .targets
        .iter()
        .copied()
        .filter(|&i| matches!(plan.targets[i].action, Action::Copy | Action::Overwrite))
        .collect();
    let source = stores.get(&job.source);
    let uploads = needed
        .iter()
        .map(|&i| {
            let target = &plan.targets[i];
            if target.action == Action::Overwrite {
                tracing::warn!(destination = %target.destination_url(), "overwriting other bytes (--allow-overwrite)");
            }
            stores.get(&target.destination).upload(&job.name, job.sha256.hex())
        })
        .collect();
    let on_read = {
        let progress = progress.clone();
        move |bytes| progress.advance(bytes)
    };
    let result = match copy_object(source, &job.name, &job.sha256, uploads, on_read).await {
        Ok(result) => result,
        Err(e) => return needed.iter().map(|&i| (i, format!("cannot read the source: {e}"))).collect(),
    };
    counters.files_read.fetch_add(1, Ordering::Relaxed);
    counters.bytes_read.fetch_add(result.bytes, Ordering::Relaxed);
    let mut failed = Vec::new();
    let mut committed = Vec::new();
    for (&i, outcome) in needed.iter().zip(result.destinations) {
        match (&result.source, outcome) {
            (Err(e), _) => failed.push((i, e.to_string())),
            (Ok(()), Err(e)) => failed.push((i, e.to_string())),
            (Ok(()), Ok(())) => committed.push(i),
        }
    }
    // Verify: each write is read back as a HEAD (size; and the recorded sha256 on cloud stores).
    let checks = committed.iter().map(|&i| async move {
        let target = &plan.targets[i];
        let head = stores.get(&target.destination).head(&job.name).await;
        let problem = match head {
            Ok(Some(info)) if info.size != result.bytes => {
                Some(format!("after the write the destination holds {} bytes, not {}", info.size, result.bytes))
            }
            Ok(Some(info)) if info.sha256.as_deref().is_some_and(|s| s != job.sha256.hex()) => {
                Some(format!("after the write the destination records sha256 {}", info.sha256.unwrap_or_default()))
            }
            Ok(Some(_)) => None,
            Ok(None) => Some("after the write the destination does not have the file".into()),
            Err(e) => Some(format!("cannot check the write: {e}")),
        };
        (i, problem)
    });
    for (i, problem) in futures::future::join_all(checks).await {
        match problem {
            Some(problem) => failed.push((i, problem)),
            None => {
                counters.bytes_written.fetch_add(result.bytes, Ordering::Relaxed);
            }
        }
    }
    failed
}
