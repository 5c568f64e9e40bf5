//! A card as a person reads it: a one-paragraph summary, Markdown (the
//! post-mortem document) and an HTML page with the SLI around the alert and
//! each evidence trace drawn as inline SVG — one module per format, what
//! they share in [`text`](self) helpers.

mod html;
mod markdown;
mod svg;
mod text;

pub use html::{html, html_list};
pub use markdown::markdown;
pub use svg::{sli_svg, trace_svg};
pub use text::{escape, summary};
