//! Figures extracted from a program's output, for `command` workloads.
//!
//! A scenario names each figure with a regular expression whose first
//! capture group is the number:
//!
//! ```toml
//! metrics = [{ name = "events_per_s", unit = "1/s", regex = 'events per second:\s+([0-9.]+)', better = "higher" }]
//! ```
//!
//! The last match in the output counts (programs that print progress print
//! the final figure last). A rule that matches nothing, or a capture that is
//! not a number, is an error naming the rule.

use crate::workload::{Better, Metric};
use regex::Regex;
use serde::{Deserialize, Serialize};

/// One figure to find in a program's output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricRule {
    /// Metric name in the records.
    pub name: String,
    /// Its unit.
    pub unit: String,
    /// A regular expression whose first capture group is the value.
    #[serde(with = "serde_regex")]
    pub regex: Regex,
    /// Which direction is better.
    pub better: Better,
}

impl PartialEq for MetricRule {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.unit == other.unit
            && self.regex.as_str() == other.regex.as_str()
            && self.better == other.better
    }
}

mod serde_regex {
    use regex::Regex;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(r: &Regex, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(r.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Regex, D::Error> {
        let text = String::deserialize(d)?;
        let re = Regex::new(&text)
            .map_err(|e| serde::de::Error::custom(format!("invalid regex: {e}")))?;
        if re.captures_len() < 2 {
            return Err(serde::de::Error::custom(format!(
                "regex `{text}` has no capture group; put the number in ( )"
            )));
        }
        Ok(re)
    }
}

/// Applies every rule to `output`; the first rule that fails is the error.
pub fn extract(rules: &[MetricRule], output: &str) -> Result<Vec<Metric>, String> {
    rules
        .iter()
        .map(|rule| {
            let caps = rule.regex.captures_iter(output).last().ok_or_else(|| {
                format!(
                    "metric `{}`: regex `{}` matched nothing in the program's output",
                    rule.name,
                    rule.regex.as_str()
                )
            })?;
            let text = caps.get(1).map_or("", |m| m.as_str());
            let value: f64 = text.trim().parse().map_err(|_| {
                format!(
                    "metric `{}`: regex `{}` captured `{text}`, which is not a number",
                    rule.name,
                    rule.regex.as_str()
                )
            })?;
            Ok(Metric {
                name: rule.name.clone(),
                unit: rule.unit.clone(),
                value,
                better: rule.better,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, re: &str) -> MetricRule {
        MetricRule {
            name: name.into(),
            unit: "1/s".into(),
            regex: Regex::new(re).unwrap(),
            better: Better::Higher,
        }
    }

    #[test]
    fn the_last_match_counts() {
        let out = "events per second:   100.5\n...\nevents per second:  2345.67\nlatency 1.5 ms\n";
        let m = extract(
            &[
                rule("eps", r"events per second:\s+([0-9.]+)"),
                rule("lat", r"latency ([0-9.]+) ms"),
            ],
            out,
        )
        .unwrap();
        assert_eq!(m[0].value, 2345.67);
        assert_eq!(m[1].value, 1.5);
        assert_eq!(m[0].name, "eps");
    }

    #[test]
    fn misses_and_non_numbers_are_named() {
        let err = extract(&[rule("eps", r"events: ([0-9]+)")], "nothing here").unwrap_err();
        assert!(
            err.contains("metric `eps`") && err.contains("matched nothing"),
            "{err}"
        );
        let err = extract(&[rule("v", r"value: (\S+)")], "value: n/a").unwrap_err();
        assert!(err.contains("captured `n/a`"), "{err}");
    }

    #[test]
    fn rules_deserialize_and_check_their_regex() {
        let ok: MetricRule = toml::from_str(
            "name = \"x\"\nunit = \"s\"\nregex = 'took ([0-9.]+)'\nbetter = \"lower\"\n",
        )
        .unwrap();
        assert_eq!(ok.better, Better::Lower);
        let no_group = toml::from_str::<MetricRule>(
            "name = \"x\"\nunit = \"s\"\nregex = 'took'\nbetter = \"lower\"\n",
        );
        assert!(
            no_group
                .unwrap_err()
                .to_string()
                .contains("no capture group")
        );
        let bad = toml::from_str::<MetricRule>(
            "name = \"x\"\nunit = \"s\"\nregex = '(['\nbetter = \"lower\"\n",
        );
        assert!(bad.unwrap_err().to_string().contains("invalid regex"));
    }
}
