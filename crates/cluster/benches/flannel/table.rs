//! The run's summary: one row per figure and backend, flannel's and
//! tweed's values, their ratio, and whether tweed meets the target
//! (equal or better; pod-ready p99 at most 0.8 of flannel's).

/// Which way a figure is better.
#[derive(Clone, Copy, PartialEq)]
pub enum Better {
    Lower,
    Higher,
}

pub struct Row {
    figure: String,
    backend: String,
    unit: &'static str,
    flannel: f64,
    tweed: f64,
    better: Better,
    /// The most (Lower) or least (Higher) tweed/flannel may be.
    target: f64,
}

impl Row {
    /// The most (Lower) or least (Higher) tweed/flannel may be.
    pub fn target(&mut self, target: f64) {
        self.target = target;
    }
}

#[derive(Default)]
pub struct Table {
    rows: Vec<Row>,
    /// Lines printed under the table: figures that are not a pair.
    notes: Vec<String>,
}

impl Table {
    /// A figure where tweed must be equal or better; `.target(x)` on the
    /// row sets another bound.
    pub fn add(
        &mut self,
        figure: &str,
        backend: &str,
        unit: &'static str,
        (flannel, tweed): (f64, f64),
        better: Better,
    ) -> &mut Row {
        self.rows.push(Row {
            figure: figure.into(),
            backend: backend.into(),
            unit,
            flannel,
            tweed,
            better,
            target: 1.0,
        });
        self.rows.last_mut().expect("the row just added")
    }

    /// A line printed under the table.
    pub fn note(&mut self, line: String) {
        self.notes.push(line);
    }

    pub fn print(&self) {
        println!("\n=== flannel against tweed, same cluster, same run\n");
        println!("| figure | backend | flannel | tweed | tweed / flannel | target | met |");
        println!("|---|---|---|---|---|---|---|");
        for r in &self.rows {
            let ratio = r.tweed / r.flannel;
            let (target, met) = match r.better {
                Better::Lower => (format!("≤ {:.2}", r.target), ratio <= r.target),
                Better::Higher => (format!("≥ {:.2}", r.target), ratio >= r.target),
            };
            println!(
                "| {} | {} | {} {} | {} {} | {ratio:.2} | {target} | {} |",
                r.figure,
                r.backend,
                fmt(r.flannel),
                r.unit,
                fmt(r.tweed),
                r.unit,
                if met { "yes" } else { "**no**" }
            );
        }
        if !self.notes.is_empty() {
            println!();
        }
        for line in &self.notes {
            println!("- {line}");
        }
    }
}

fn fmt(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}
