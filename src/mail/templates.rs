//! Email templates: loaded once from a directory, checked at start-up, rendered per email with
//! locale fallback. The layout, variables and rules are in docs/templates.md.
//!
//! Files are `<kind>.<locale>.subject.txt`, `<kind>.<locale>.text.txt` and
//! `<kind>.<locale>.html`; `layout.html` and files starting with `_` are shared (for
//! `{% extends %}` and `{% include %}`). HTML parts are auto-escaped, text parts are not.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use minijinja::value::Value;
use minijinja::{context, AutoEscape, Environment, Output, State, UndefinedBehavior};

use super::context::human_date_from_iso;
pub use super::context::EmailContext;
use super::single_line;

/// How errors name a built-in template: `built-in/invite.en.html`.
const BUILT_IN_LABEL: &str = "built-in";

/// The files of `templates/`, compiled in ([`Templates::built_in`]). A test checks this list
/// against the directory.
const BUILT_IN: &[(&str, &str)] = &[
    (
        "_components.html",
        include_str!("../../templates/_components.html"),
    ),
    (
        "invite.de.html",
        include_str!("../../templates/invite.de.html"),
    ),
    (
        "invite.de.subject.txt",
        include_str!("../../templates/invite.de.subject.txt"),
    ),
    (
        "invite.de.text.txt",
        include_str!("../../templates/invite.de.text.txt"),
    ),
    (
        "invite.en.html",
        include_str!("../../templates/invite.en.html"),
    ),
    (
        "invite.en.subject.txt",
        include_str!("../../templates/invite.en.subject.txt"),
    ),
    (
        "invite.en.text.txt",
        include_str!("../../templates/invite.en.text.txt"),
    ),
    ("layout.html", include_str!("../../templates/layout.html")),
    (
        "reminder.en.html",
        include_str!("../../templates/reminder.en.html"),
    ),
    (
        "reminder.en.subject.txt",
        include_str!("../../templates/reminder.en.subject.txt"),
    ),
    (
        "reminder.en.text.txt",
        include_str!("../../templates/reminder.en.text.txt"),
    ),
    (
        "welcome.en.html",
        include_str!("../../templates/welcome.en.html"),
    ),
    (
        "welcome.en.subject.txt",
        include_str!("../../templates/welcome.en.subject.txt"),
    ),
    (
        "welcome.en.text.txt",
        include_str!("../../templates/welcome.en.text.txt"),
    ),
];

/// Which email to render.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TemplateKind {
    /// The invitation with the username and temporary password.
    Invite,
    /// "Your account is ready", after the invite was accepted.
    Welcome,
    /// "Your invitation expires on ...", before expiry.
    Reminder,
}

impl TemplateKind {
    pub const ALL: [TemplateKind; 3] = [
        TemplateKind::Invite,
        TemplateKind::Welcome,
        TemplateKind::Reminder,
    ];

    /// The name used in file names (`invite`).
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateKind::Invite => "invite",
            TemplateKind::Welcome => "welcome",
            TemplateKind::Reminder => "reminder",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for TemplateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The three files of one email in one locale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    Subject,
    Text,
    Html,
}

impl Part {
    const ALL: [Part; 3] = [Part::Subject, Part::Text, Part::Html];

    fn suffix(self) -> &'static str {
        match self {
            Part::Subject => "subject.txt",
            Part::Text => "text.txt",
            Part::Html => "html",
        }
    }

    fn file_name(self, kind: TemplateKind, locale: &str) -> String {
        format!("{kind}.{locale}.{}", self.suffix())
    }
}

/// A template problem, naming the file (as under the configured directory) and, when known,
/// the line: `templates/invite.en.html line 12: undefined value`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct TemplateError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} line {line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// One rendered email. `Debug` shows neither body: they carry the temporary password.
#[derive(Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    /// One line, trimmed, without control characters.
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The locale of the templates that were used (after fallback), as in their file names.
    pub locale_used: String,
}

impl fmt::Debug for RenderedEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderedEmail")
            .field("subject", &self.subject)
            .field("locale_used", &self.locale_used)
            .finish_non_exhaustive()
    }
}

/// The loaded, checked templates. Cheap to share behind an `Arc`; rendering takes `&self`.
pub struct Templates {
    env: Environment<'static>,
    dir: PathBuf,
    default_locale: String,
    /// For each kind: lower-cased locale → the locale as spelled in the file names.
    locales: BTreeMap<TemplateKind, BTreeMap<String, String>>,
}

impl fmt::Debug for Templates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Templates")
            .field("dir", &self.dir)
            .field("default_locale", &self.default_locale)
            .field("locales", &self.locales)
            .finish()
    }
}

impl Templates {
    /// Reads every template in `dir`, compiles it and checks that each kind has all three parts
    /// in `default_locale` (and in every other locale it has at all), and that every template
    /// renders against a full and a sparse sample context. Any problem is an error naming the
    /// file and line, so a broken template stops the service at start-up, not at the first send.
    ///
    /// An empty `dir` (the default `email.templates_dir`) means the set compiled into the
    /// binary, [`Templates::built_in`].
    pub fn load(dir: &Path, default_locale: &str) -> Result<Templates, TemplateError> {
        if dir.as_os_str().is_empty() {
            return Self::built_in(default_locale);
        }
        let dir_error = |message: String| TemplateError {
            file: dir.display().to_string(),
            line: None,
            message,
        };
        let entries = std::fs::read_dir(dir)
            .map_err(|e| dir_error(format!("cannot read the template directory: {e}")))?;
        let mut files = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| dir_error(format!("cannot read the template directory: {e}")))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                return Err(dir_error(format!(
                    "{} has a name that is not UTF-8",
                    path.display()
                )));
            };
            if name.starts_with('.')
                || !(name.ends_with(".html") || name.ends_with(".txt"))
                || !path.is_file()
            {
                continue;
            }
            let source = std::fs::read_to_string(&path).map_err(|e| TemplateError {
                file: path.display().to_string(),
                line: None,
                message: format!("cannot read: {e}"),
            })?;
            files.push((name, source));
        }
        Self::compile(dir, files, default_locale)
    }

    /// The shipped templates (`templates/` of the source), compiled into the binary, so the
    /// worker needs no files at run time. Errors name them as `built-in/<file>`.
    pub fn built_in(default_locale: &str) -> Result<Templates, TemplateError> {
        let files = BUILT_IN
            .iter()
            .map(|(name, source)| (name.to_string(), source.to_string()));
        Self::compile(Path::new(BUILT_IN_LABEL), files, default_locale)
    }

    /// Where templates configured as `dir` come from, for messages: the directory, or
    /// "the built-in templates".
    pub fn describe(dir: &Path) -> String {
        if dir.as_os_str().is_empty() {
            "the built-in templates".to_owned()
        } else {
            dir.display().to_string()
        }
    }

    /// Compiles and checks one set of `(file name, source)` pairs; `dir` only names them.
    fn compile(
        dir: &Path,
        files: impl IntoIterator<Item = (String, String)>,
        default_locale: &str,
    ) -> Result<Templates, TemplateError> {
        if !valid_locale(default_locale) {
            return Err(TemplateError {
                file: dir.display().to_string(),
                line: None,
                message: format!(
                    "default locale {default_locale:?} is not a language tag such as \"en\""
                ),
            });
        }
        let mut env = new_environment();
        let mut locales: BTreeMap<TemplateKind, BTreeMap<String, String>> = BTreeMap::new();
        let mut parts: BTreeSet<(TemplateKind, String, Part)> = BTreeSet::new();
        for (name, source) in files {
            let path = dir.join(&name);
            let file_error = |message: String| TemplateError {
                file: path.display().to_string(),
                line: None,
                message,
            };
            if name != "layout.html" && !name.starts_with('_') {
                let (kind, locale, part) = parse_file_name(&name).ok_or_else(|| {
                    file_error(
                        "unexpected file name: expected <kind>.<locale>.subject.txt, .text.txt or .html with kind \
                         invite, welcome or reminder (or layout.html, or _partial.html for includes)"
                            .into(),
                    )
                })?;
                let spelled = locales
                    .entry(kind)
                    .or_default()
                    .entry(locale.to_ascii_lowercase())
                    .or_insert_with(|| locale.clone());
                if *spelled != locale {
                    return Err(file_error(format!(
                        "locale {locale:?} is also spelled {spelled:?}; use one spelling"
                    )));
                }
                parts.insert((kind, locale, part));
            }
            env.add_template_owned(name.clone(), source)
                .map_err(|e| from_minijinja(dir, &name, &e, None))?;
        }

        let templates = Templates {
            env,
            dir: dir.to_path_buf(),
            default_locale: default_locale.to_owned(),
            locales,
        };
        templates.check_complete(&parts)?;
        templates.check_renders()?;
        Ok(templates)
    }

    /// Renders `kind` in the best locale for `locale`: the exact tag (`pt-BR`), then shorter
    /// prefixes down to the language (`pt`), then the default locale.
    pub fn render(
        &self,
        kind: TemplateKind,
        locale: Option<&str>,
        ctx: &EmailContext,
    ) -> Result<RenderedEmail, TemplateError> {
        let used = self.resolve(kind, locale);
        let values = context! {
            locale => used,
            greeting_name => ctx.greeting_name(),
            ..Value::from_serialize(ctx)
        };
        let secret = ctx.temporary_password.as_str();
        let subject = self.render_part(kind, used, Part::Subject, &values, secret)?;
        let text = self.render_part(kind, used, Part::Text, &values, secret)?;
        let html = self.render_part(kind, used, Part::Html, &values, secret)?;
        let subject = single_line(&subject);
        if subject.is_empty() {
            return Err(TemplateError {
                file: self.display_path(&Part::Subject.file_name(kind, used)),
                line: None,
                message: "renders an empty subject".into(),
            });
        }
        Ok(RenderedEmail {
            subject,
            text: finish_text(text),
            html,
            locale_used: used.to_owned(),
        })
    }

    /// The locales available for `kind`, as spelled in the file names.
    pub fn locales(&self, kind: TemplateKind) -> Vec<&str> {
        self.locales
            .get(&kind)
            .map(|m| m.values().map(String::as_str).collect())
            .unwrap_or_default()
    }

    pub fn default_locale(&self) -> &str {
        &self.default_locale
    }

    /// The locale whose templates render `kind` for a request in `requested`.
    pub fn resolve(&self, kind: TemplateKind, requested: Option<&str>) -> &str {
        let available = self.locales.get(&kind);
        if let (Some(available), Some(requested)) = (available, requested) {
            let mut tag = requested.trim().replace('_', "-").to_ascii_lowercase();
            loop {
                if let Some(spelled) = available.get(&tag) {
                    return spelled;
                }
                match tag.rfind('-') {
                    Some(cut) => tag.truncate(cut),
                    None => break,
                }
            }
        }
        available
            .and_then(|m| m.get(&self.default_locale.to_ascii_lowercase()))
            .map(String::as_str)
            .unwrap_or(&self.default_locale)
    }

    fn check_complete(
        &self,
        parts: &BTreeSet<(TemplateKind, String, Part)>,
    ) -> Result<(), TemplateError> {
        for kind in TemplateKind::ALL {
            let default = self.resolve(kind, None).to_owned();
            let mut wanted: Vec<String> = vec![default];
            wanted.extend(self.locales(kind).into_iter().map(str::to_owned));
            for locale in wanted {
                for part in Part::ALL {
                    if !parts.contains(&(kind, locale.clone(), part)) {
                        let why = if locale.eq_ignore_ascii_case(&self.default_locale) {
                            format!("missing: every kind needs all three parts in the default locale {:?}", self.default_locale)
                        } else {
                            format!("missing: locale {locale:?} of {kind} needs all three parts (subject.txt, text.txt, html)")
                        };
                        return Err(TemplateError {
                            file: self.display_path(&part.file_name(kind, &locale)),
                            line: None,
                            message: why,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn check_renders(&self) -> Result<(), TemplateError> {
        let samples = [
            EmailContext::sample_full("Sample App"),
            EmailContext::sample_minimal("Sample App"),
        ];
        for kind in TemplateKind::ALL {
            for locale in self.locales(kind) {
                for ctx in &samples {
                    self.render(kind, Some(locale), ctx)?;
                }
            }
        }
        Ok(())
    }

    fn render_part(
        &self,
        kind: TemplateKind,
        locale: &str,
        part: Part,
        values: &Value,
        secret: &str,
    ) -> Result<String, TemplateError> {
        let name = part.file_name(kind, locale);
        let template = self
            .env
            .get_template(&name)
            .map_err(|e| from_minijinja(&self.dir, &name, &e, Some(secret)))?;
        template
            .render(values)
            .map_err(|e| from_minijinja(&self.dir, &name, &e, Some(secret)))
    }

    fn display_path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

fn new_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env.set_formatter(html_formatter);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    // Debug info would copy variable values (the password) into error reports.
    env.set_debug(false);
    env.add_filter("human_date", human_date_filter);
    env
}

/// minijinja's formatter, except that HTML escaping leaves `/` alone: `<`, `>`, `&`, `"` and `'`
/// are what matter in text and quoted attributes, and links stay `https://...` for link checkers
/// and click tracking instead of `https:&#x2f;&#x2f;...`.
fn html_formatter(out: &mut Output, state: &State, value: &Value) -> Result<(), minijinja::Error> {
    match value.as_str() {
        Some(s) if state.auto_escape() == AutoEscape::Html && !value.is_safe() => {
            write_html_escaped(out, s).map_err(minijinja::Error::from)
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// Writes `s` with `<`, `>`, `&`, `"` and `'` escaped, copying the runs between them whole
/// (the five are ASCII, so a byte scan never splits a UTF-8 sequence).
fn write_html_escaped(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    let mut from = 0;
    for (i, byte) in s.bytes().enumerate() {
        let entity = match byte {
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'&' => "&amp;",
            b'"' => "&quot;",
            b'\'' => "&#x27;",
            _ => continue,
        };
        out.write_str(&s[from..i])?;
        out.write_str(entity)?;
        from = i + 1;
    }
    out.write_str(&s[from..])
}

/// `{{ expires_at_iso|human_date }}`: the date in the language of the template being rendered.
fn human_date_filter(state: &State, iso: &str) -> Result<String, minijinja::Error> {
    let locale = state
        .lookup("locale")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    human_date_from_iso(iso, &locale).ok_or_else(|| {
        minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            "human_date expects an RFC 3339 date such as expires_at_iso",
        )
    })
}

/// Turns a minijinja error into ours: the file that failed (the innermost one, for an error in
/// a layout), the line, and the kind and detail only. The detail is scrubbed of `secret`: an
/// error message must never carry the temporary password.
fn from_minijinja(
    dir: &Path,
    rendering: &str,
    err: &minijinja::Error,
    secret: Option<&str>,
) -> TemplateError {
    let name = err.name().unwrap_or(rendering);
    let mut message = match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    };
    if let Some(secret) = secret.filter(|s| !s.is_empty()) {
        message = message.replace(secret, "[redacted]");
    }
    if name != rendering {
        message = format!("{message} (while rendering {rendering})");
    }
    TemplateError {
        file: dir.join(name).display().to_string(),
        line: err.line(),
        message,
    }
}

/// `invite.pt-BR.text.txt` → (Invite, "pt-BR", Text).
fn parse_file_name(name: &str) -> Option<(TemplateKind, String, Part)> {
    let (stem, part) = Part::ALL.into_iter().find_map(|p| {
        name.strip_suffix(p.suffix())
            .and_then(|s| s.strip_suffix('.'))
            .map(|stem| (stem, p))
    })?;
    let (kind, locale) = stem.split_once('.')?;
    let kind = TemplateKind::parse(kind)?;
    valid_locale(locale).then(|| (kind, locale.to_owned(), part))
}

/// A BCP 47-ish tag: a 2–3 letter language, then `-` subtags of 2–8 letters or digits.
fn valid_locale(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let lang = parts.next().unwrap_or_default();
    (2..=3).contains(&lang.len())
        && lang.chars().all(|c| c.is_ascii_alphabetic())
        && parts.all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// Text bodies end with exactly one newline.
fn finish_text(mut text: String) -> String {
    text.truncate(text.trim_end().len());
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Templates {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        match Templates::load(&dir, "en") {
            Ok(t) => t,
            Err(e) => panic!("shipped templates: {e}"),
        }
    }

    /// A directory with the smallest valid set, to break in one place per test.
    fn minimal_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for kind in TemplateKind::ALL {
            write(
                &dir,
                &format!("{kind}.en.subject.txt"),
                "Subject for {{ email }}",
            );
            write(
                &dir,
                &format!("{kind}.en.text.txt"),
                "Hello {{ greeting_name }}\n",
            );
            write(&dir, &format!("{kind}.en.html"), "{% extends \"layout.html\" %}{% block body %}<p>{{ greeting_name }}</p>{% endblock %}");
        }
        write(
            &dir,
            "layout.html",
            "<html>\n{% block body %}{% endblock %}\n</html>",
        );
        dir
    }

    fn write(dir: &tempfile::TempDir, name: &str, content: &str) {
        std::fs::write(dir.path().join(name), content).expect("write template");
    }

    fn load_err(dir: &tempfile::TempDir) -> TemplateError {
        match Templates::load(dir.path(), "en") {
            Ok(_) => panic!("expected the template directory to be rejected"),
            Err(e) => e,
        }
    }

    #[test]
    fn templates_can_be_shared_between_tasks() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<Templates>();
    }

    #[test]
    fn the_built_in_set_is_the_templates_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut on_disk: Vec<(String, String)> = std::fs::read_dir(&dir)
            .expect("templates/")
            .map(|e| e.expect("entry").path())
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&p).expect("read"))
            })
            .collect();
        on_disk.sort();
        let built_in: Vec<(String, String)> = BUILT_IN
            .iter()
            .map(|(n, s)| (n.to_string(), s.to_string()))
            .collect();
        assert_eq!(
            built_in, on_disk,
            "BUILT_IN must list every file of templates/"
        );
        let t = Templates::load(Path::new(""), "en").expect("an empty dir means built in");
        assert_eq!(t.locales(TemplateKind::Invite), vec!["de", "en"]);
        assert_eq!(Templates::describe(Path::new("")), "the built-in templates");
    }

    #[test]
    fn shipped_templates_load_with_their_locales() {
        let t = shipped();
        assert_eq!(t.locales(TemplateKind::Invite), vec!["de", "en"]);
        assert_eq!(t.locales(TemplateKind::Welcome), vec!["en"]);
        assert_eq!(t.locales(TemplateKind::Reminder), vec!["en"]);
    }

    #[test]
    fn invite_renders_every_variable() {
        let t = shipped();
        let ctx = EmailContext::sample_full("Acme Cloud");
        let mail = t
            .render(TemplateKind::Invite, Some("en"), &ctx)
            .expect("render");
        assert_eq!(mail.locale_used, "en");
        assert_eq!(mail.subject, "Max Mustermann invited you to Acme Cloud");
        for part in [&mail.text, &mail.html] {
            for needle in [
                "Hi Jane,",
                "Max Mustermann",
                "Acme Cloud",
                "https://app.example.com/sign-in",
                "jane.doe@example.com",
                "Sample-Passw0rd!",
                "2 December 2026, 12:00 UTC",
                "in 7 days",
                "support@example.com",
                "00000000-0000-0000-0000-000000000000",
                "choose a new password",
                "ignore this email",
            ] {
                assert!(part.contains(needle), "{needle:?} missing from:\n{part}");
            }
        }
        // The contract the end-to-end tests rely on: the password on its own line.
        assert!(
            mail.text
                .lines()
                .any(|l| l == "Temporary password: Sample-Passw0rd!"),
            "{}",
            mail.text
        );
        assert!(mail
            .text
            .lines()
            .any(|l| l == "Username: jane.doe@example.com"));
        assert!(mail
            .html
            .contains("href=\"https://app.example.com/sign-in\""));
        assert!(mail.html.starts_with("<!DOCTYPE html>"));
        assert!(mail.html.contains("<html lang=\"en\""));
        assert!(mail.text.ends_with('\n') && !mail.text.ends_with("\n\n"));
    }

    #[test]
    fn sparse_context_greets_by_email_and_omits_the_optional() {
        let t = shipped();
        let ctx = EmailContext::sample_minimal("Acme Cloud");
        let mail = t.render(TemplateKind::Invite, None, &ctx).expect("render");
        assert_eq!(mail.subject, "You're invited to Acme Cloud");
        assert!(
            mail.text.starts_with("Hi jane.doe@example.com,\n"),
            "{}",
            mail.text
        );
        assert!(!mail.text.contains("Questions?"));
        assert!(!mail.html.contains("Max Mustermann"));
    }

    #[test]
    fn custom_templates_see_every_context_variable() {
        let dir = minimal_dir();
        let all = "{{ app_name }}|{{ email }}|{{ username }}|{{ temporary_password }}|{{ sign_in_url }}|{{ expires_at }}|\
                   {{ expires_at_iso }}|{{ expires_at_iso|human_date }}|{{ expires_in_days }}|{{ invited_by }}|\
                   {{ attributes.given_name }}|{{ attributes.family_name }}|{{ metadata.team }}|{{ requested_locale }}|\
                   {{ locale }}|{{ support_email }}|{{ invite_id }}|{{ greeting_name }}";
        // Optional values are guarded so that the sparse sample renders too.
        let guarded = all
            .replace(
                "{{ attributes.family_name }}",
                "{{ attributes.family_name|default('') }}",
            )
            .replace(
                "{{ attributes.given_name }}",
                "{{ attributes.given_name|default('') }}",
            )
            .replace("{{ metadata.team }}", "{{ metadata.team|default('') }}");
        write(&dir, "invite.de.subject.txt", "s");
        write(&dir, "invite.de.html", "h");
        write(&dir, "invite.de.text.txt", &guarded);
        let t = Templates::load(dir.path(), "en").expect("load");
        let ctx = EmailContext::sample_full("Acme");
        let mail = t
            .render(TemplateKind::Invite, Some("de-DE"), &ctx)
            .expect("render");
        assert_eq!(
            mail.text.trim_end(),
            "Acme|jane.doe@example.com|jane.doe@example.com|Sample-Passw0rd!|https://app.example.com/sign-in|\
             2 December 2026, 12:00 UTC|2026-12-02T12:00:00Z|2. Dezember 2026, 12:00 UTC|7|Max Mustermann|Jane|Doe|\
             Platform|en-GB|de|support@example.com|00000000-0000-0000-0000-000000000000|Jane"
        );
    }

    #[test]
    fn html_escaping_replaces_the_five_and_copies_the_rest() {
        let escape = |s: &str| {
            let mut out = String::new();
            write_html_escaped(&mut out, s).expect("write to a String");
            out
        };
        assert_eq!(escape(""), "");
        assert_eq!(escape("plain / text"), "plain / text");
        assert_eq!(
            escape("<a href=\"x\">Tom & Jerry's</a>"),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#x27;s&lt;/a&gt;"
        );
        assert_eq!(escape("&&<<"), "&amp;&amp;&lt;&lt;");
        assert_eq!(escape("Zoë <日本> 😀'"), "Zoë &lt;日本&gt; 😀&#x27;");
        assert_eq!(
            escape("https://x.example/a?b=1&c=2"),
            "https://x.example/a?b=1&amp;c=2"
        );
    }

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let t = shipped();
        let mut ctx = EmailContext::sample_full("Acme <Cloud>");
        ctx.attributes
            .insert("given_name".into(), "<script>alert(1)</script>".into());
        ctx.invited_by = Some("\"onmouseover=alert(1)".into());
        let mail = t
            .render(TemplateKind::Invite, Some("en"), &ctx)
            .expect("render");
        assert!(!mail.html.contains("<script>"), "{}", mail.html);
        assert!(
            mail.html
                .contains("Hi &lt;script&gt;alert(1)&lt;/script&gt;,"),
            "{}",
            mail.html
        );
        assert!(!mail.html.contains("\"onmouseover="));
        assert!(mail.html.contains("&quot;onmouseover=alert(1)"));
        assert!(mail.html.contains("Acme &lt;Cloud&gt;"));
        assert!(mail.text.contains("Hi <script>alert(1)</script>,"));
        assert!(mail.text.contains("\"onmouseover=alert(1) has invited you"));
        assert!(mail
            .subject
            .contains("\"onmouseover=alert(1) invited you to Acme <Cloud>"));
    }

    #[test]
    fn locale_falls_back_to_language_then_default() {
        let t = shipped();
        let ctx = EmailContext::sample_full("Acme");
        let de = t
            .render(TemplateKind::Invite, Some("de-AT"), &ctx)
            .expect("render");
        assert_eq!(de.locale_used, "de");
        assert_eq!(de.subject, "Max Mustermann hat Sie zu Acme eingeladen");
        assert!(
            de.text
                .lines()
                .any(|l| l == "Temporäres Passwort: Sample-Passw0rd!"),
            "{}",
            de.text
        );
        assert!(
            de.text
                .contains("gültig bis 2. Dezember 2026, 12:00 UTC (noch 7 Tage)"),
            "{}",
            de.text
        );
        assert!(de.html.contains("<html lang=\"de\""));
        for (asked, used) in [
            (Some("fr"), "en"),
            (Some("DE"), "de"),
            (Some("de_CH"), "de"),
            (None, "en"),
            (Some(""), "en"),
            (Some("../x"), "en"),
        ] {
            assert_eq!(t.resolve(TemplateKind::Invite, asked), used, "{asked:?}");
        }
        let fr = t
            .render(TemplateKind::Invite, Some("fr"), &ctx)
            .expect("render");
        assert_eq!(fr.locale_used, "en");
        assert_eq!(
            t.render(TemplateKind::Welcome, Some("de"), &ctx)
                .expect("render")
                .locale_used,
            "en"
        );
    }

    #[test]
    fn welcome_and_reminder_render() {
        let t = shipped();
        let mut ctx = EmailContext::sample_full("Acme");
        ctx.temporary_password.clear();
        let welcome = t.render(TemplateKind::Welcome, None, &ctx).expect("render");
        assert_eq!(welcome.subject, "Your Acme account is ready");
        assert!(welcome.text.contains("account is ready"));
        let reminder = t
            .render(TemplateKind::Reminder, None, &ctx)
            .expect("render");
        assert_eq!(
            reminder.subject,
            "Reminder: your invitation to Acme expires on 2 December 2026, 12:00 UTC"
        );
        assert!(reminder
            .text
            .contains("Use the temporary password from your invitation email."));
        assert!(!reminder.text.contains("Temporary password:"));
        let with_password = t
            .render(
                TemplateKind::Reminder,
                None,
                &EmailContext::sample_full("Acme"),
            )
            .expect("render");
        assert!(with_password
            .text
            .lines()
            .any(|l| l == "Temporary password: Sample-Passw0rd!"));
    }

    #[test]
    fn subject_is_one_line() {
        let dir = minimal_dir();
        write(
            &dir,
            "invite.en.subject.txt",
            "\n  Welcome,\r\n {{ invited_by }}\t!\n\n",
        );
        let t = Templates::load(dir.path(), "en").expect("load");
        let mut ctx = EmailContext::sample_full("Acme");
        ctx.invited_by = Some("Eve\r\nBcc: victim@example.com\u{85}\u{2028}X".into());
        let mail = t.render(TemplateKind::Invite, None, &ctx).expect("render");
        assert_eq!(mail.subject, "Welcome, Eve Bcc: victim@example.com X !");
        assert!(!mail.subject.contains(['\r', '\n']));
        let shipped = shipped()
            .render(TemplateKind::Invite, None, &ctx)
            .expect("render");
        assert!(
            !shipped.subject.contains(['\r', '\n']),
            "{:?}",
            shipped.subject
        );
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let dir = minimal_dir();
        write(
            &dir,
            "invite.en.html",
            "{% extends \"layout.html\" %}\n{% block body %}\n{% if %}\n{% endblock %}",
        );
        let err = load_err(&dir);
        assert!(err.file.ends_with("invite.en.html"), "{err}");
        assert_eq!(err.line, Some(3), "{err}");
        let shown = err.to_string();
        assert!(
            shown.contains("invite.en.html line 3: syntax error"),
            "{shown}"
        );
    }

    #[test]
    fn undefined_variable_names_file_and_line() {
        let dir = minimal_dir();
        write(
            &dir,
            "welcome.en.text.txt",
            "Hello\n{{ greeting_name }}\n{{ no_such_variable }}\n",
        );
        let err = load_err(&dir);
        assert!(err.file.ends_with("welcome.en.text.txt"), "{err}");
        assert_eq!(err.line, Some(3), "{err}");
        assert!(err.message.contains("undefined"), "{err}");
    }

    #[test]
    fn an_unguarded_optional_value_is_caught_by_the_sparse_sample() {
        let dir = minimal_dir();
        write(&dir, "invite.en.text.txt", "Hi {{ attributes.given_name }}");
        let err = load_err(&dir);
        assert!(
            err.file.ends_with("invite.en.text.txt") && err.line == Some(1),
            "{err}"
        );
    }

    #[test]
    fn error_in_the_layout_names_the_layout() {
        let dir = minimal_dir();
        write(
            &dir,
            "layout.html",
            "<html>\n\n{{ missing }}{% block body %}{% endblock %}</html>",
        );
        let err = load_err(&dir);
        assert!(err.file.ends_with("layout.html"), "{err}");
        assert_eq!(err.line, Some(3), "{err}");
        assert!(err.message.contains("while rendering"), "{err}");
    }

    #[test]
    fn missing_default_part_is_named() {
        let dir = minimal_dir();
        std::fs::remove_file(dir.path().join("reminder.en.subject.txt")).expect("remove");
        let err = load_err(&dir);
        assert!(err.file.ends_with("reminder.en.subject.txt"), "{err}");
        assert!(err.message.contains("default locale"), "{err}");
        assert_eq!(err.line, None);
    }

    #[test]
    fn incomplete_locale_is_named() {
        let dir = minimal_dir();
        write(&dir, "invite.fr.html", "<p>Bonjour</p>");
        let err = load_err(&dir);
        assert!(err.file.ends_with("invite.fr.subject.txt"), "{err}");
    }

    #[test]
    fn unexpected_file_names_are_rejected() {
        for bad in [
            "invitation.en.html",
            "invite.english-language.html",
            "invite.html",
            "invite.en.body.txt",
        ] {
            let dir = minimal_dir();
            write(&dir, bad, "x");
            let err = load_err(&dir);
            assert!(
                err.file.ends_with(bad) && err.message.contains("unexpected file name"),
                "{bad}: {err}"
            );
        }
        // Other files (a README, editor back-ups) are ignored.
        let dir = minimal_dir();
        write(&dir, "README.md", "notes");
        write(&dir, ".invite.en.html.swp", "x");
        assert!(Templates::load(dir.path(), "en").is_ok());
    }

    #[test]
    fn missing_directory_and_bad_default_locale() {
        let err = Templates::load(Path::new("/nonexistent/templates"), "en")
            .map(|_| ())
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/templates: cannot read"),
            "{err}"
        );
        let dir = minimal_dir();
        assert!(Templates::load(dir.path(), "../en").is_err());
        let err = Templates::load(dir.path(), "de").map(|_| ()).unwrap_err();
        assert!(err.file.ends_with("invite.de.subject.txt"), "{err}");
    }

    #[test]
    fn render_errors_never_carry_the_password() {
        let dir = minimal_dir();
        let t = Templates::load(dir.path(), "en").expect("load");
        let ctx = EmailContext::sample_full("Acme");
        let err = from_minijinja(
            dir.path(),
            "invite.en.text.txt",
            &minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!("cannot use {}", ctx.temporary_password),
            ),
            Some(&ctx.temporary_password),
        );
        assert!(!err.to_string().contains(&ctx.temporary_password), "{err}");
        let mail = t.render(TemplateKind::Invite, None, &ctx).expect("render");
        assert!(!format!("{mail:?}").contains(&ctx.temporary_password));
    }
}
