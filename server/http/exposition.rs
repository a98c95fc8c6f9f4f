//! Writing the Prometheus text exposition format 0.0.4: `# HELP` and `# TYPE` once per
//! family, samples with escaped labels.

use std::fmt::{Display, Write as _};

/// Prometheus metric types used here.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Counter,
    Gauge,
}

/// A text exposition (format 0.0.4) being written: `# HELP` and `# TYPE` once per family,
/// then its samples.
#[derive(Debug, Default)]
pub(super) struct Exposition {
    pub(super) text: String,
}

impl Exposition {
    pub(super) fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        // HELP text escapes only backslash and newline (exposition format spec).
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    pub(super) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    pub(super) fn gauge(&mut self, name: &str, help: &str, value: impl Display) {
        self.family(name, Kind::Gauge, help);
        self.sample(name, &[], value);
    }

    pub(super) fn counter(&mut self, name: &str, help: &str, value: impl Display) {
        self.family(name, Kind::Counter, help);
        self.sample(name, &[], value);
    }
}

/// Label values escape backslash, double quote and newline (exposition format spec); stream
/// names come from config and may contain any of them.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_help_and_type_and_labels_are_escaped() {
        let mut out = Exposition::default();
        out.family("snaprelay_x_total", Kind::Counter, "a\\b\nc");
        out.sample("snaprelay_x_total", &[("stream", "a\"b\\c\nd")], 3);
        out.gauge("snaprelay_y", "y", 1.5);
        assert_eq!(
            out.text,
            "# HELP snaprelay_x_total a\\\\b\\nc\n# TYPE snaprelay_x_total counter\n\
             snaprelay_x_total{stream=\"a\\\"b\\\\c\\nd\"} 3\n\
             # HELP snaprelay_y y\n# TYPE snaprelay_y gauge\nsnaprelay_y 1.5\n"
        );
    }
}
