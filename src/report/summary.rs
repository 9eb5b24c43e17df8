//! `summary.json`: every series with its statistics and ratio to native.

use super::{Exporter, ReportData, ReportError};

/// `summary.json`: every series with its statistics and ratio to native.
pub struct SummaryJson;

impl Exporter for SummaryJson {
    fn file_name(&self) -> &'static str {
        "summary.json"
    }
    fn export(&self, data: &ReportData) -> Result<Vec<u8>, ReportError> {
        let doc = serde_json::json!({
            "run_id": data.meta.run_id,
            "status": data.meta.status,
            "scenario": data.meta.scenario.get("name"),
            "accelerator": data.meta.accelerator,
            "series": data.series,
            "failures": data.failures,
        });
        let mut bytes = serde_json::to_vec_pretty(&doc).map_err(|source| ReportError::Encode {
            file: self.file_name(),
            source,
        })?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}
