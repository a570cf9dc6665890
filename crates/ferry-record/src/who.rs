//! Who ran a command: the user and machine, and the CI job when there is one, from the
//! variables each CI system documents.

use serde::{Deserialize, Serialize};

/// Who ran the command.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Who {
    /// The user: the CI system's actor when it names one, else `USER`/`LOGNAME`/`USERNAME`.
    pub user: Option<String>,
    /// The machine's host name.
    pub host: Option<String>,
    /// The CI job, when run by one.
    pub ci: Option<Ci>,
}

/// A CI job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ci {
    /// `github-actions`, `prow`, `gitlab`, `jenkins`, or `unknown` (only `CI=true` is set).
    pub system: String,
    /// A link to the job's page or log, when the system gives one.
    pub job_url: Option<String>,
    /// The job's (or workflow's) name.
    pub job: Option<String>,
    /// This run of the job.
    pub run: Option<String>,
}

impl Who {
    /// Reads the variables through `env` (empty ones as absent).
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Who {
        let ci = ci(&env);
        let actor = env("GITHUB_ACTOR").or_else(|| env("GITLAB_USER_LOGIN")).or_else(|| env("BUILD_USER_ID"));
        let user = actor.or_else(|| env("USER")).or_else(|| env("LOGNAME")).or_else(|| env("USERNAME"));
        let host = env("HOSTNAME").or_else(|| {
            let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
            Some(name.trim().to_string()).filter(|n| !n.is_empty())
        });
        Who { user, host, ci }
    }
}

fn ci(env: &impl Fn(&str) -> Option<String>) -> Option<Ci> {
    if env("GITHUB_ACTIONS").as_deref() == Some("true") {
        let run = env("GITHUB_RUN_ID");
        let job_url = match (env("GITHUB_SERVER_URL"), env("GITHUB_REPOSITORY"), &run) {
            (Some(server), Some(repository), Some(run)) => {
                let attempt = env("GITHUB_RUN_ATTEMPT").map_or(String::new(), |a| format!("/attempts/{a}"));
                Some(format!("{server}/{repository}/actions/runs/{run}{attempt}"))
            }
            _ => None,
        };
        let job = env("GITHUB_WORKFLOW").or_else(|| env("GITHUB_JOB"));
        return Some(Ci { system: "github-actions".into(), job_url, job, run });
    }
    if env("PROW_JOB_ID").is_some() {
        // Kubernetes' Prow: the job's page is on the deck of the Prow that ran it, which the
        // job is not told; its name and build id find it there.
        let run = env("BUILD_ID").or_else(|| env("PROW_JOB_ID"));
        return Some(Ci { system: "prow".into(), job_url: None, job: env("JOB_NAME"), run });
    }
    if env("GITLAB_CI").is_some() {
        return Some(Ci {
            system: "gitlab".into(),
            job_url: env("CI_JOB_URL"),
            job: env("CI_JOB_NAME"),
            run: env("CI_JOB_ID"),
        });
    }
    if env("JENKINS_URL").is_some() {
        return Some(Ci {
            system: "jenkins".into(),
            job_url: env("BUILD_URL"),
            job: env("JOB_NAME"),
            run: env("BUILD_NUMBER"),
        });
    }
    if env("CI").is_some_and(|v| v == "true" || v == "1") {
        return Some(Ci { system: "unknown".into(), ..Ci::default() });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn github_actions_gives_the_run_url_and_the_actor() {
        let who = Who::from_env(env(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "kubernetes/k8s.io"),
            ("GITHUB_RUN_ID", "42"),
            ("GITHUB_RUN_ATTEMPT", "2"),
            ("GITHUB_WORKFLOW", "promote"),
            ("GITHUB_ACTOR", "release-bot"),
            ("USER", "runner"),
            ("HOSTNAME", "fv-az1"),
        ]));
        assert_eq!(who.user.as_deref(), Some("release-bot"));
        assert_eq!(who.host.as_deref(), Some("fv-az1"));
        let ci = who.ci.unwrap();
        assert_eq!(ci.system, "github-actions");
        assert_eq!(ci.job_url.as_deref(), Some("https://github.com/kubernetes/k8s.io/actions/runs/42/attempts/2"));
        assert_eq!((ci.job.as_deref(), ci.run.as_deref()), (Some("promote"), Some("42")));
    }

    #[test]
    fn prow_gitlab_jenkins_and_a_person() {
        let prow =
            Who::from_env(env(&[("PROW_JOB_ID", "abc"), ("JOB_NAME", "post-k8sio-image-promo"), ("BUILD_ID", "17")]));
        let ci = prow.ci.unwrap();
        assert_eq!(
            (ci.system.as_str(), ci.job.as_deref(), ci.run.as_deref()),
            ("prow", Some("post-k8sio-image-promo"), Some("17"))
        );
        let gitlab = Who::from_env(env(&[("GITLAB_CI", "true"), ("CI_JOB_URL", "https://gitlab.example/j/9")]));
        assert_eq!(gitlab.ci.unwrap().job_url.as_deref(), Some("https://gitlab.example/j/9"));
        let jenkins = Who::from_env(env(&[("JENKINS_URL", "https://ci"), ("BUILD_URL", "https://ci/job/p/3/")]));
        assert_eq!(jenkins.ci.unwrap().system, "jenkins");
        let person = Who::from_env(env(&[("LOGNAME", "alice"), ("HOSTNAME", "laptop")]));
        assert_eq!((person.user.as_deref(), person.ci), (Some("alice"), None));
    }
}
