//! Invoice PDFs, written with `pdf-writer`: A4 pages of text in Helvetica (one of the 14
//! fonts every PDF reader has, so nothing is embedded), each page's content deflated.
//! PDF/A-3 conformance (embedded fonts, XMP metadata, an attached XML invoice) is not
//! attempted.
//!
//! Generation is CPU work: a few milliseconds for an invoice of a thousand lines, all in
//! one call. A handler that ran it inside its future would hold its worker thread that
//! long, and every other request on that worker would wait: see
//! [`PdfGeneration`](crate::config::PdfGeneration), and the per-route task metrics that
//! show it (`tokio_task_slow_poll_seconds_total`).

use std::io::Write as _;

use flate2::Compression;
use flate2::write::ZlibEncoder;
use pdf_writer::{Content, Filter, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

/// A4, in points.
const WIDTH: f32 = 595.0;
const HEIGHT: f32 = 842.0;
const MARGIN: f32 = 56.0;
const FONT_SIZE: f32 = 10.0;
const LEADING: f32 = 14.0;
/// Longest line, in characters: what fits between the margins at this size.
const MAX_CHARS: usize = 95;

/// A PDF of `lines` of text under the title `title`, as many pages as they need.
pub fn render(title: &str, lines: &[String]) -> Vec<u8> {
    let per_page = ((HEIGHT - 2.0 * MARGIN - 2.0 * LEADING) / LEADING) as usize;
    let pages: Vec<&[String]> = if lines.is_empty() {
        vec![&[]]
    } else {
        lines.chunks(per_page).collect()
    };
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let font = Ref::new(3);
    let info = Ref::new(4);
    // Then a page and its content stream for each page.
    let page_ref = |n: usize| Ref::new(5 + 2 * n as i32);
    let content_ref = |n: usize| Ref::new(6 + 2 * n as i32);
    let font_name = Name(b"F1");

    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids((0..pages.len()).map(page_ref))
        .count(pages.len() as i32);
    pdf.document_info(info)
        .title(TextStr(title))
        .producer(TextStr("invoicing (tower-prometheus example)"));
    pdf.type1_font(font)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    for (n, page_lines) in pages.iter().enumerate() {
        let mut page = pdf.page(page_ref(n));
        page.media_box(Rect::new(0.0, 0.0, WIDTH, HEIGHT))
            .parent(tree)
            .contents(content_ref(n));
        page.resources().fonts().pair(font_name, font);
        page.finish();

        let mut content = Content::new();
        content.begin_text();
        content.set_font(font_name, FONT_SIZE);
        content.set_leading(LEADING);
        content.next_line(MARGIN, HEIGHT - MARGIN);
        let heading = format!("{title}  -  page {} of {}", n + 1, pages.len());
        content.show(Str(&win_ansi(&heading)));
        content.next_line_using_leading();
        for line in page_lines.iter() {
            content.next_line_using_leading();
            content.show(Str(&win_ansi(line)));
        }
        content.end_text();
        let deflated = deflate(&content.finish());
        pdf.stream(content_ref(n), &deflated)
            .filter(Filter::FlateDecode);
    }
    pdf.finish()
}

fn deflate(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = ZlibEncoder::new(Vec::new(), Compression::best());
    encoder
        .write_all(bytes)
        .expect("writing to a Vec does not fail");
    encoder.finish().expect("writing to a Vec does not fail")
}

/// `text` in the WinAnsi encoding of the font: ASCII and Latin-1 as they are, `€` as
/// 0x80, anything else (and control characters) as `?`; cut at [`MAX_CHARS`].
fn win_ansi(text: &str) -> Vec<u8> {
    text.chars()
        .take(MAX_CHARS)
        .map(|c| match c {
            ' '..='~' => c as u8,
            '€' => 0x80,
            '\u{a0}'..='\u{ff}' => c as u32 as u8,
            _ => b'?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pdf_of_as_many_pages_as_the_lines_need() {
        let lines: Vec<String> = (0..200).map(|n| format!("line {n}")).collect();
        let pdf = render("Invoice F-1", &lines);
        assert!(pdf.starts_with(b"%PDF-"));
        assert!(pdf.ends_with(b"%%EOF\n") || pdf.ends_with(b"%%EOF"));
        let text = String::from_utf8_lossy(&pdf);
        let pages = text.matches("/Type /Page\n").count() + text.matches("/Type /Page ").count();
        assert!(pages >= 4, "200 lines at 50 a page: {pages} pages");
        assert!(
            text.contains("/Count 4") || text.contains("/Count 5"),
            "{text}"
        );
    }

    #[test]
    fn text_is_encoded_for_the_font() {
        assert_eq!(win_ansi("Café 12 €"), b"Caf\xe9 12 \x80");
        assert_eq!(win_ansi("日本\n"), b"???");
        assert_eq!(win_ansi(&"x".repeat(200)).len(), MAX_CHARS);
    }
}
