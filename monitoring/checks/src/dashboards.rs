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

/// Runs every dashboard of `dashboards` against a real Prometheus-compatible `api`, as
/// Grafana would: each variable's `label_values` query must offer values (for `job` and
/// `instance`, the ones in `instances`, a map job -> the instance the test scrapes), then
/// every panel query, with the variables set (`job` and `instance` to the test's target,
/// other variables to "All"), must return at least one series.
///
/// Prints one line per variable and query; returns the failures, empty when all passed.
pub fn run_against(
    api: &crate::stack::PromApi,
    dashboards: &[Dashboard],
    instances: &BTreeMap<String, String>,
    rate_interval: &str,
) -> Vec<String> {
    let mut failures = Vec::new();
    for dashboard in dashboards {
        let title = dashboard.title();
        println!("\n  dashboard {title:?} ({})", dashboard.file);
        let mut values = intervals(rate_interval);
        for variable in dashboard.variables() {
            let Some((selector, label)) = variable.label_values(&values) else {
                failures.push(format!(
                    "{title}: variable {} is not label_values(selector, label): {}",
                    variable.name, variable.query
                ));
                continue;
            };
            let found = api.label_values(&selector, &label);
            println!(
                "    variable ${:<9} {} values  {:?}",
                variable.name,
                found.len(),
                &found[..found.len().min(6)]
            );
            if found.is_empty() {
                failures.push(format!(
                    "{title}: variable {} has no value ({})",
                    variable.name, variable.query
                ));
            }
            // The job the dashboard offers that the test scrapes (the first one in
            // `instances` that it offers), and that job's instance.
            let wanted = match variable.name.as_str() {
                "job" => instances.keys().find(|job| found.contains(job)).cloned(),
                "instance" => values
                    .get("job")
                    .and_then(|job| instances.get(job))
                    .cloned(),
                _ => None,
            };
            if let Some(wanted) = wanted.as_ref().filter(|wanted| !found.contains(wanted)) {
                failures.push(format!(
                    "{title}: variable {} does not offer {wanted}",
                    variable.name
                ));
            }
            let value = wanted
                .or(variable.all_value.clone())
                .or(found.first().cloned())
                .unwrap_or_default();
            values.insert(variable.name.clone(), value);
        }
        for query in dashboard.queries() {
            let expr = substitute(&query.expr, &values);
            if expr.contains('$') {
                failures.push(format!("{}: unsubstituted variable in {expr}", query.title));
                continue;
            }
            let n = match api.api("query", &[("query", &expr)]) {
                Ok(data) => data["result"].as_array().map_or(0, Vec::len),
                Err(e) => {
                    failures.push(format!("{title} / {}: {e}", query.title));
                    continue;
                }
            };
            println!("    {n:>3} series  {} [{}]", query.title, query.ref_id);
            if n == 0 {
                failures.push(format!(
                    "{title} / {} [{}]: no series for {expr}",
                    query.title, query.ref_id
                ));
            }
        }
    }
    failures
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
