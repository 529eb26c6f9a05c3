//! `--config FILE`: every flag of a clap command as a TOML key (the flag's long name:
//! `numport = 5151`, `data-dir = "/var/lib/idserver"`, `peers = ["10.0.0.1:5151", …]`,
//! `verbose = true`), with one precedence: flag > environment > file > default. Unknown keys
//! and values a flag refuses are errors at `file:line:col`.

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};
use std::collections::BTreeMap;
use std::ffi::OsString;
use toml::Spanned;

/// Flags that are not settings (and so not keys of the file).
const NOT_SETTINGS: [&str; 4] = ["config", "print-config", "help", "version"];

/// Where an effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag.
    Flag,
    /// An environment variable.
    Env,
    /// The config file.
    File,
    /// The default.
    Default,
}

impl Source {
    /// As `--print-config` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Flag => "flag",
            Source::Env => "environment",
            Source::File => "file",
            Source::Default => "default",
        }
    }
}

/// The command line with the file's settings added where no flag or variable set them, and
/// which settings the file gave.
#[derive(Debug)]
pub struct Merged {
    /// Arguments to parse (the program name first).
    pub args: Vec<OsString>,
    /// Setting names the file gave.
    pub from_file: Vec<String>,
    /// Where each key of the file is (`line:col`), for errors about its value.
    locations: BTreeMap<String, String>,
    path: String,
}

impl Merged {
    /// `file:line:col: …` for an error clap reports about the file's setting named in it, if
    /// one is.
    pub fn locate(&self, error: &str) -> Option<String> {
        let first = error.lines().next().unwrap_or(error);
        let first = first.strip_prefix("error: ").unwrap_or(first);
        self.from_file.iter().find_map(|key| {
            first
                .contains(&format!("--{key}"))
                .then(|| format!("{}:{}: {key}: {first}", self.path, self.locations[key]))
        })
    }
}

fn line_col(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("{line}:{col}")
}

/// Adds the settings of the TOML `text` (read from `path`) to `args` (the program's command
/// line, program name first) where `lenient` (the same command line parsed without the file,
/// errors ignored) shows no flag or environment variable set them.
pub fn merge(
    command: &Command,
    lenient: &ArgMatches,
    args: Vec<OsString>,
    path: &str,
    text: &str,
) -> Result<Merged, String> {
    let at = |offset: usize, what: String| format!("{path}:{}: {what}", line_col(text, offset));
    let table: BTreeMap<Spanned<String>, Spanned<toml::Value>> =
        toml::from_str(text).map_err(|e| match e.span() {
            Some(span) => at(span.start, e.message().to_string()),
            None => format!("{path}: {}", e.message()),
        })?;
    let settings: BTreeMap<&str, &clap::Arg> = command
        .get_arguments()
        .filter_map(|a| Some((a.get_long()?, a)))
        .filter(|(long, _)| !NOT_SETTINGS.contains(long))
        .collect();
    let mut merged = Merged {
        args,
        from_file: Vec::new(),
        locations: BTreeMap::new(),
        path: path.to_string(),
    };
    for (key, value) in &table {
        let name = key.get_ref().as_str();
        let Some(arg) = settings.get(name) else {
            let known: Vec<&str> = settings.keys().copied().collect();
            return Err(at(
                key.span().start,
                format!(
                    "unknown setting `{name}`, expected one of {}",
                    known.join(", ")
                ),
            ));
        };
        merged
            .locations
            .insert(name.to_string(), line_col(text, value.span().start));
        let id = arg.get_id().as_str();
        if matches!(
            lenient.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let wrong = |expected: &str| {
            at(
                value.span().start,
                format!(
                    "`{name}` takes {expected}, not {}",
                    value.get_ref().type_str()
                ),
            )
        };
        let flag = matches!(arg.get_action(), ArgAction::SetTrue);
        let rendered = match (value.get_ref(), flag) {
            (toml::Value::Boolean(on), true) => {
                if *on {
                    merged.args.push(format!("--{name}").into());
                    merged.from_file.push(name.to_string());
                }
                continue;
            }
            (_, true) => return Err(wrong("true or false")),
            (toml::Value::String(s), false) => s.clone(),
            (toml::Value::Integer(i), false) => i.to_string(),
            (toml::Value::Array(items), false) if arg.get_value_delimiter().is_some() => items
                .iter()
                .map(|item| match item {
                    toml::Value::String(s) => Ok(s.clone()),
                    toml::Value::Integer(i) => Ok(i.to_string()),
                    _ => Err(wrong("a list of strings")),
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            _ => return Err(wrong("a string or an integer")),
        };
        merged.args.push(format!("--{name}={rendered}").into());
        merged.from_file.push(name.to_string());
    }
    Ok(merged)
}

/// Every setting's effective value and where it came from, one `name = value  # source` line
/// each (for `--print-config`).
pub fn describe(command: &Command, matches: &ArgMatches, from_file: &[String]) -> String {
    let mut out = String::new();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if NOT_SETTINGS.contains(&long) {
            continue;
        }
        let id = arg.get_id().as_str();
        let source = if from_file.iter().any(|f| f == long) {
            Source::File
        } else {
            match matches.value_source(id) {
                Some(ValueSource::CommandLine) => Source::Flag,
                Some(ValueSource::EnvVariable) => Source::Env,
                _ => Source::Default,
            }
        };
        let value = match arg.get_action() {
            ArgAction::SetTrue => matches.get_flag(id).to_string(),
            _ => match matches.get_raw(id) {
                Some(values) => {
                    let values: Vec<String> = values
                        .map(|v| format!("{:?}", without_password(&v.to_string_lossy())))
                        .collect();
                    if arg.get_value_delimiter().is_some() {
                        format!("[{}]", values.join(", "))
                    } else {
                        values.join(" ")
                    }
                }
                None => "(unset)".into(),
            },
        };
        // Secrets are files (their names are no secret), or a password in a URL (hidden).
        out += &format!("{long} = {value}  # {}\n", source.as_str());
    }
    out
}

/// A URL's password replaced by `***` (`redis://user:secret@host` -> `redis://user:***@host`);
/// anything else as it is.
pub fn without_password(value: &str) -> String {
    let Some(scheme_end) = value.find("://").map(|i| i + 3) else {
        return value.to_string();
    };
    let rest = &value[scheme_end..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let Some(at) = authority.rfind('@') else {
        return value.to_string();
    };
    match authority[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &value[..scheme_end],
            &authority[..colon],
            &rest[at..]
        ),
        None => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn passwords_in_urls_are_hidden_and_nothing_else_changes() {
        for (shown, hidden) in [
            (
                "redis://user:secret@10.0.0.1:6379/0",
                "redis://user:***@10.0.0.1:6379/0",
            ),
            ("redis://:secret@host", "redis://:***@host"),
            ("rediss://u:p@ss:w@host/1?x=@", "rediss://u:***@host/1?x=@"),
            ("redis://host:6379", "redis://host:6379"),
            ("redis://user@host", "redis://user@host"),
            ("/var/lib/idserver", "/var/lib/idserver"),
        ] {
            assert_eq!(without_password(shown), hidden);
        }
    }
}
