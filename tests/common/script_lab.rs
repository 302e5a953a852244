//! A lab built by one of the tests/lab scripts that take `LAB_PREFIX` and `LAB_LOGDIR` and
//! answer `up` / `down` (gslb.sh, ecmp.sh): brought up here, torn down on drop (also when an
//! assertion fails); its namespaces are `PREFIX-NAME`.

use std::path::PathBuf;
use std::process::{Command, Output};

use super::lab::{assert_root, repo};

pub struct ScriptLab {
    pub prefix: String,
    pub logdir: PathBuf,
    script: &'static str,
}

impl ScriptLab {
    /// `tests/lab/SCRIPT up` with `prefix` (short: interface names are built on it).
    pub fn up(script: &'static str, prefix: &str) -> ScriptLab {
        assert_root();
        let lab = ScriptLab {
            prefix: prefix.into(),
            logdir: PathBuf::from(format!("/tmp/{prefix}-lab")),
            script,
        };
        let o = lab.script(&["up"]);
        assert!(
            o.status.success(),
            "{script} up failed:\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        lab
    }

    /// Runs the lab's script with `args`.
    pub fn script(&self, args: &[&str]) -> Output {
        Command::new(repo(&format!("tests/lab/{}", self.script)))
            .args(args)
            .env("LAB_PREFIX", &self.prefix)
            .env("LAB_LOGDIR", &self.logdir)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", self.script))
    }

    pub fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// `args` in namespace `PREFIX-NS`.
    pub fn exec(&self, ns: &str, args: &[&str]) -> Output {
        super::lab::exec_in(&self.ns(ns), args)
    }
}

impl Drop for ScriptLab {
    fn drop(&mut self) {
        let _ = self.script(&["down"]);
    }
}
