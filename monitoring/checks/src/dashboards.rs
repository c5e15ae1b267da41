//! The dashboard walk, written once: every Grafana dashboard of a folder, its variables
//! and every panel query, with Grafana's variables replaced by values the caller gives.
//! The static test parses what it yields as PromQL; the end-to-end test sends it to a
//! real Prometheus.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// One dashboard file.
#[derive(Debug)]
pub struct Dashboard {
    /// The file name (`service-overview.json`).
    pub file: String,
    /// The file as written.
    pub text: String,
    /// The file parsed.
    pub json: Value,
}

/// A dashboard variable (`templating.list[]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    /// Its name, without `$`.
    pub name: String,
    /// Its query as written (`label_values(up{job=~"$job"}, instance)`).
    pub query: String,
    /// What "All" stands for, when the variable offers it.
    pub all_value: Option<String>,
}

impl Variable {
    /// The selector and label of a `label_values(selector, label)` query, once `values`
    /// are substituted; `None` for any other query.
    pub fn label_values(&self, values: &BTreeMap<String, String>) -> Option<(String, String)> {
        let query = substitute(&self.query, values);
        let args = query.strip_prefix("label_values(")?.strip_suffix(')')?;
        let (selector, label) = args.rsplit_once(',')?;
        let label = label.trim();
        let valid =
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        valid.then(|| (selector.trim().to_owned(), label.to_owned()))
    }
}

/// A panel query: the panel's title, the target's `refId` and its expression as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Query<'a> {
    /// The panel (`panels[]` or a row's `panels[]`).
    pub panel: &'a Value,
    /// The panel's title.
    pub title: String,
    /// The target's `refId` (`A`).
    pub ref_id: String,
    /// The expression, variables unsubstituted.
    pub expr: String,
}

/// The dashboards of `dir` (`*.json`), sorted by file name.
///
/// # Panics
///
/// When the folder cannot be read or a file is not JSON: the tests fail saying which.
pub fn load(dir: &Path) -> Vec<Dashboard> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text =
                fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
            let file = path
                .file_name()
                .expect("a file read from a folder has a name")
                .to_string_lossy()
                .into_owned();
            Dashboard { file, text, json }
        })
        .collect()
}

impl Dashboard {
    /// The dashboard's title.
    pub fn title(&self) -> &str {
        self.json["title"].as_str().unwrap_or_default()
    }

    /// Every panel, rows' nested panels included, in order.
    pub fn panels(&self) -> Vec<&Value> {
        fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
            for panel in list.as_array().into_iter().flatten() {
                out.push(panel);
                walk(&panel["panels"], out);
            }
        }
        let mut out = Vec::new();
        walk(&self.json["panels"], &mut out);
        out
    }

    /// The variables, in order.
    pub fn variables(&self) -> Vec<Variable> {
        self.json["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| Variable {
                name: v["name"].as_str().unwrap_or_default().to_owned(),
                query: v["query"]["query"]
                    .as_str()
                    .or(v["query"].as_str())
                    .unwrap_or_default()
                    .to_owned(),
                all_value: (v["includeAll"] == true)
                    .then(|| v["allValue"].as_str().unwrap_or(".*").to_owned()),
            })
            .collect()
    }

    /// Every panel query, in panel order.
    pub fn queries(&self) -> Vec<Query<'_>> {
        self.panels()
            .into_iter()
            .flat_map(|panel| {
                let title = panel["title"].as_str().unwrap_or_default().to_owned();
                panel["targets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(move |target| Query {
                        panel,
                        title: title.clone(),
                        ref_id: target["refId"].as_str().unwrap_or_default().to_owned(),
                        expr: target["expr"].as_str().unwrap_or_default().to_owned(),
                    })
            })
            .collect()
    }
}

/// `expr` with each `$name` and `${name}` of `values` replaced, longest names first (so
/// that `$__rate_interval` is not read as `$__rate` and text). Unknown variables stay.
pub fn substitute(expr: &str, values: &BTreeMap<String, String>) -> String {
    let mut names: Vec<&String> = values.keys().collect();
    names.sort_by_key(|name| std::cmp::Reverse(name.len()));
    let mut out = expr.to_owned();
    for name in names {
        let value = &values[name];
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    out
}

/// Grafana's built-in interval variables, with the values both tests give them.
pub fn intervals(rate_interval: &str) -> BTreeMap<String, String> {
    [
        ("__rate_interval", rate_interval),
        ("__interval", "1s"),
        ("__range", "1h"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_takes_the_longest_name_first_in_both_spellings() {
        let mut values = intervals("1m");
        values.insert("job".into(), "invoicing".into());
        assert_eq!(
            substitute(
                "rate(x{job=~\"$job\", a=\"${job}\"}[$__rate_interval]) $other",
                &values
            ),
            "rate(x{job=~\"invoicing\", a=\"invoicing\"}[1m]) $other"
        );
    }

    #[test]
    fn label_values_queries_are_read_others_are_not() {
        let variable = |query: &str| Variable {
            name: "v".into(),
            query: query.into(),
            all_value: None,
        };
        let values = BTreeMap::from([("job".to_owned(), "invoicing".to_owned())]);
        assert_eq!(
            variable("label_values(up{job=~\"$job\"}, instance)").label_values(&values),
            Some(("up{job=~\"invoicing\"}".into(), "instance".into()))
        );
        assert_eq!(variable("query_result(up)").label_values(&values), None);
        assert_eq!(variable("label_values(up, )").label_values(&values), None);
    }
}
