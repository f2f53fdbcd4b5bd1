//! `GET /units/{id}/export.csv`, `/export.xlsx` and `/report.html`: the sheet as a download.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use kaohe_rubric::period::Period;

use super::no_store;
use crate::scores::FullSheet;
use crate::store::Unit;
use crate::web::WebError;

/// A download of the sheet: CSV, XLSX or the printable self-check report.
pub(super) fn export(
    unit: &Unit,
    period: &Period,
    sheet: &FullSheet,
    suffix: &str,
    now: DateTime<Utc>,
) -> Result<Response, WebError> {
    let base = format!("{}-{}-考核评分表", unit.name, period);
    let ascii = format!("kaohe-{}-{period}", unit.id.replace('/', "-"));
    let (bytes, kind, (name, fallback), inline) = match suffix {
        "/export.csv" => (
            crate::export::sheet_csv(sheet),
            "text/csv; charset=utf-8",
            (format!("{base}.csv"), format!("{ascii}.csv")),
            false,
        ),
        "/export.xlsx" => (
            crate::export::sheet_xlsx(sheet).map_err(|e| WebError::Internal(e.to_string()))?,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            (format!("{base}.xlsx"), format!("{ascii}.xlsx")),
            false,
        ),
        _ => (
            crate::export::self_check_html(sheet, now).into_bytes(),
            "text/html; charset=utf-8",
            (
                format!("{}-{}-自检报告.html", unit.name, period),
                format!("{ascii}-self-check.html"),
            ),
            true,
        ),
    };
    let mut r = (StatusCode::OK, [(header::CONTENT_TYPE, kind)], bytes).into_response();
    let disposition = if inline {
        crate::web::attachment(&name, &fallback).replacen("attachment", "inline", 1)
    } else {
        crate::web::attachment(&name, &fallback)
    };
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    no_store(&mut r);
    Ok(r)
}
