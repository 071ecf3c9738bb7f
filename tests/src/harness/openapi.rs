//! An OpenAPI 3.1 description, read enough to check it and to check real answers against
//! it: every `$ref` resolves, and a response has a documented status, its documented content
//! type and headers, and a body valid under the documented schema.
//!
//! The schemas are checked by a small JSON Schema validator for the keywords a description
//! of this project uses. A keyword it does not know is an error, never a pass, so a schema
//! that grows past it fails the test that relies on it instead of being skipped.

use std::collections::BTreeSet;

use anyhow::{Context, bail, ensure};
use serde_json::{Map, Value};

use super::http::HttpResponse;

/// The HTTP methods an OpenAPI path item may describe.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Keywords that only describe (they never make an instance invalid).
const ANNOTATIONS: [&str; 5] = ["description", "title", "examples", "default", "deprecated"];

/// A parsed OpenAPI 3.1 description.
#[derive(Debug, Clone)]
pub struct Description {
    root: Value,
}

/// One documented answer: a status of a method of a path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Documented {
    /// The path template, e.g. `/v1/{collection}/{id}`.
    pub path: String,
    /// The method, upper case.
    pub method: String,
    /// The status.
    pub status: u16,
}

impl Description {
    /// Parses `text`, checking that it is OpenAPI 3.1 and self-consistent: every `$ref`
    /// resolves, every operation documents at least one response, every status is a
    /// three-digit code and every `{name}` of a path is a declared path parameter.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let root: Value = serde_json::from_str(text).context("the description is not JSON")?;
        let version = root["openapi"].as_str().unwrap_or_default();
        ensure!(
            version.starts_with("3.1."),
            "openapi is {version:?}, not 3.1.x"
        );
        let description = Self { root };
        description.check_refs(&description.root, "#")?;
        description.check_operations()?;
        Ok(description)
    }

    /// Every documented (path, method, status).
    pub fn answers(&self) -> BTreeSet<Documented> {
        let mut all = BTreeSet::new();
        for (path, method, operation) in self.operations() {
            for status in operation["responses"].as_object().into_iter().flatten() {
                if let Ok(status) = status.0.parse() {
                    all.insert(Documented {
                        path: path.clone(),
                        method: method.to_ascii_uppercase(),
                        status,
                    });
                }
            }
        }
        all
    }

    /// The error names (`error` of the body) the description allows for `status` of
    /// `method path`: the `enum` or `const` of its schema's `error` property.
    pub fn error_names(&self, path: &str, method: &str, status: u16) -> Vec<String> {
        let Ok(response) = self.response(path, method, status) else {
            return Vec::new();
        };
        let schema = &response["content"]["application/json"]["schema"];
        let error = match self.resolve(schema) {
            Ok(schema) => &schema["properties"]["error"],
            Err(_) => return Vec::new(),
        };
        if let Some(name) = error["const"].as_str() {
            return vec![name.to_owned()];
        }
        error["enum"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    }

    /// Checks a real answer to `method path` (a template of the description) against it:
    /// a documented status; the documented content type, and a body valid under its schema
    /// (skipped for `HEAD`, which has no body); every required documented header present and
    /// valid.
    pub fn check(&self, path: &str, method: &str, answer: &HttpResponse) -> anyhow::Result<()> {
        let response = self.response(path, method, answer.status)?;
        for (name, header) in response["headers"].as_object().into_iter().flatten() {
            let header = self.resolve(header)?;
            match answer.header(&name.to_ascii_lowercase()) {
                Some(value) => self
                    .validate(&header["schema"], &Value::String(value.to_owned()))
                    .with_context(|| format!("header {name}: {value:?}"))?,
                None if header["required"] == true => bail!("no {name} header"),
                None => {}
            }
        }
        let Some(content) = response["content"].as_object() else {
            return Ok(());
        };
        if method.eq_ignore_ascii_case("HEAD") {
            return Ok(());
        }
        let media = answer
            .header("content-type")
            .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned())
            .context("no content-type")?;
        let documented = content
            .get(&media)
            .with_context(|| format!("content-type {media} is not documented"))?;
        if media == "application/json" {
            let body = answer.json()?;
            self.validate(&documented["schema"], &body)
                .with_context(|| format!("body {body}"))?;
        }
        Ok(())
    }

    /// The response object documented for `status` of `method path`.
    fn response(&self, path: &str, method: &str, status: u16) -> anyhow::Result<&Value> {
        let operation = &self.root["paths"][path][method.to_ascii_lowercase()];
        ensure!(operation.is_object(), "{method} {path} is not documented");
        let response = &operation["responses"][status.to_string()];
        ensure!(
            response.is_object(),
            "{method} {path} does not document status {status}"
        );
        self.resolve(response)
    }

    fn operations(&self) -> Vec<(String, String, &Value)> {
        let mut all = Vec::new();
        for (path, item) in self.root["paths"].as_object().into_iter().flatten() {
            for method in METHODS {
                if let Some(operation) = item.get(method) {
                    all.push((path.clone(), method.to_owned(), operation));
                }
            }
        }
        all
    }

    fn check_operations(&self) -> anyhow::Result<()> {
        let operations = self.operations();
        ensure!(!operations.is_empty(), "no operations");
        let ids: BTreeSet<&str> = operations
            .iter()
            .filter_map(|(_, _, o)| o["operationId"].as_str())
            .collect();
        for link in self.links() {
            let target = link["operationId"].as_str().unwrap_or_default();
            ensure!(ids.contains(target), "a link to no operation: {link}");
        }
        for (path, method, operation) in operations {
            let responses = operation["responses"].as_object();
            ensure!(
                responses.is_some_and(|r| !r.is_empty()),
                "{method} {path} documents no response"
            );
            for status in responses.into_iter().flatten().map(|(s, _)| s) {
                ensure!(
                    status.len() == 3 && status.parse::<u16>().is_ok_and(|s| s >= 100),
                    "{method} {path}: {status:?} is not a status"
                );
            }
            let item = &self.root["paths"][&path];
            let declared: Vec<&Value> = [&item["parameters"], &operation["parameters"]]
                .into_iter()
                .filter_map(Value::as_array)
                .flatten()
                .collect();
            for name in path.split('{').skip(1).filter_map(|s| s.split('}').next()) {
                let found = declared.iter().any(|p| {
                    self.resolve(p)
                        .is_ok_and(|p| p["in"] == "path" && p["name"] == name)
                });
                ensure!(found, "{method} {path}: no path parameter {name:?}");
            }
        }
        Ok(())
    }

    /// Every link of every response (those of `components.responses` included).
    fn links(&self) -> Vec<&Value> {
        let mut responses: Vec<&Value> = self.root["components"]["responses"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(_, r)| r)
            .collect();
        for (_, _, operation) in self.operations() {
            responses.extend(
                operation["responses"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(_, r)| r),
            );
        }
        responses
            .into_iter()
            .flat_map(|r| r["links"].as_object().into_iter().flatten().map(|(_, l)| l))
            .collect()
    }

    /// Follows `value`'s `$ref`, if it has one (and the one it leads to).
    fn resolve<'a>(&'a self, mut value: &'a Value) -> anyhow::Result<&'a Value> {
        for _ in 0..16 {
            let Some(reference) = value.get("$ref").and_then(Value::as_str) else {
                return Ok(value);
            };
            value = self.pointer(reference)?;
        }
        bail!("a $ref loop")
    }

    fn pointer(&self, reference: &str) -> anyhow::Result<&Value> {
        let pointer = reference
            .strip_prefix('#')
            .with_context(|| format!("$ref {reference:?} is not within the description"))?;
        self.root
            .pointer(pointer)
            .with_context(|| format!("$ref {reference:?} leads nowhere"))
    }

    fn check_refs(&self, value: &Value, at: &str) -> anyhow::Result<()> {
        match value {
            Value::Object(object) => {
                if let Some(reference) = object.get("$ref") {
                    let reference = reference.as_str().context("a $ref that is not a string")?;
                    self.pointer(reference)
                        .with_context(|| format!("at {at}"))?;
                }
                for (key, child) in object {
                    self.check_refs(child, &format!("{at}/{key}"))?;
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    self.check_refs(child, &format!("{at}/{i}"))?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether `value` is valid under `schema` (the keywords of [`Self::keyword`]).
    pub fn validate(&self, schema: &Value, value: &Value) -> anyhow::Result<()> {
        let schema = self.resolve(schema)?;
        let Some(keywords) = schema.as_object() else {
            match schema {
                Value::Bool(true) => return Ok(()),
                _ => bail!("schema {schema} is not an object"),
            }
        };
        for (keyword, argument) in keywords {
            self.keyword(keywords, keyword, argument, value)?;
        }
        Ok(())
    }

    fn keyword(
        &self,
        schema: &Map<String, Value>,
        keyword: &str,
        argument: &Value,
        value: &Value,
    ) -> anyhow::Result<()> {
        match keyword {
            "$ref" => self.validate(argument, value),
            "type" => {
                let types: Vec<&str> = match argument {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                    _ => bail!("type {argument} is neither a name nor a list"),
                };
                ensure!(
                    types.iter().any(|t| is_type(value, t)),
                    "{value} is not of type {argument}"
                );
                Ok(())
            }
            "enum" => {
                let allowed = argument.as_array().context("enum takes a list")?;
                ensure!(allowed.contains(value), "{value} is not one of {argument}");
                Ok(())
            }
            "const" => {
                ensure!(argument == value, "{value} is not {argument}");
                Ok(())
            }
            "allOf" => argument
                .as_array()
                .context("allOf takes a list")?
                .iter()
                .try_for_each(|sub| self.validate(sub, value)),
            "items" => {
                for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                    self.validate(argument, item)
                        .with_context(|| format!("at item {i}"))?;
                }
                Ok(())
            }
            "required" | "properties" | "additionalProperties" => match value.as_object() {
                Some(object) => self.object_keyword(schema, keyword, argument, object),
                None => Ok(()),
            },
            "minimum" | "maximum" | "minLength" | "maxLength" | "pattern" => {
                bound(keyword, argument, value)
            }
            annotation if ANNOTATIONS.contains(&annotation) => Ok(()),
            unknown => bail!("the schema keyword {unknown:?} is not one this checker knows"),
        }
    }

    /// The keywords that apply to an object's properties.
    fn object_keyword(
        &self,
        schema: &Map<String, Value>,
        keyword: &str,
        argument: &Value,
        object: &Map<String, Value>,
    ) -> anyhow::Result<()> {
        if keyword == "required" {
            for name in argument.as_array().context("required takes a list")? {
                let name = name.as_str().context("a property name")?;
                ensure!(object.contains_key(name), "no {name:?} in {object:?}");
            }
            return Ok(());
        }
        let known = schema.get("properties").and_then(Value::as_object);
        for (name, v) in object {
            let declared = known.and_then(|k| k.get(name));
            match (keyword, declared, argument) {
                ("properties", Some(sub), _) => self.validate(sub, v),
                ("additionalProperties", None, Value::Bool(false)) => {
                    bail!("{name:?} is not a property of {object:?}")
                }
                ("additionalProperties", None, sub) => self.validate(sub, v),
                _ => Ok(()),
            }
            .with_context(|| format!("at {name:?}"))?;
        }
        Ok(())
    }
}

/// The keywords that bound a number or a string.
fn bound(keyword: &str, argument: &Value, value: &Value) -> anyhow::Result<()> {
    let holds = match (keyword, value) {
        ("minimum", Value::Number(n)) => n.as_f64() >= Some(number(argument)?),
        ("maximum", Value::Number(n)) => n.as_f64() <= Some(number(argument)?),
        ("minLength", Value::String(text)) => {
            text.chars().count() as u64 >= argument.as_u64().context("a length")?
        }
        ("maxLength", Value::String(text)) => {
            text.chars().count() as u64 <= argument.as_u64().context("a length")?
        }
        ("pattern", Value::String(text)) => {
            let pattern = argument.as_str().context("a pattern")?;
            regex::Regex::new(pattern)?.is_match(text)
        }
        _ => true,
    };
    ensure!(holds, "{value} breaks {keyword} {argument}");
    Ok(())
}

fn number(argument: &Value) -> anyhow::Result<f64> {
    argument
        .as_f64()
        .with_context(|| format!("{argument} is not a number"))
}

fn is_type(value: &Value, name: &str) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_u64() || value.is_i64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &str = r##"{
        "openapi": "3.1.0",
        "paths": {"/a/{x}": {
            "parameters": [{"$ref": "#/components/parameters/x"}],
            "get": {"responses": {"200": {"description": "ok",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/A"}}}}}}
        }},
        "components": {
            "parameters": {"x": {"name": "x", "in": "path", "required": true}},
            "schemas": {"A": {"type": "object", "required": ["n"], "additionalProperties": false,
                "properties": {"n": {"type": "integer", "minimum": 1}, "s": {"type": ["string", "null"]}}}}
        }
    }"##;

    fn answer(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn checks_answers_against_the_schemas() {
        let description = Description::parse(TINY).expect("consistent");
        let check = |status, body| description.check("/a/{x}", "GET", &answer(status, body));
        assert!(check(200, r#"{"n": 2, "s": null}"#).is_ok());
        for (status, body) in [
            (200, r#"{"n": 0}"#),
            (200, r#"{"s": "x"}"#),
            (200, r#"{"n": 1, "z": 1}"#),
            (200, r#"{"n": "1"}"#),
            (404, r#"{"n": 1}"#),
        ] {
            assert!(check(status, body).is_err(), "{status} {body}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_check() {
        let broken_ref = TINY.replace("schemas/A\"}", "schemas/B\"}");
        let error = Description::parse(&broken_ref).expect_err("a $ref to nothing");
        assert!(format!("{error:#}").contains("leads nowhere"), "{error:#}");
        let no_param = TINY.replace("\"name\": \"x\"", "\"name\": \"y\"");
        assert!(Description::parse(&no_param).is_err(), "{{x}} undeclared");
        let linked = TINY.replace(
            "\"description\": \"ok\",",
            "\"description\": \"ok\", \"links\": {\"L\": {\"operationId\": \"nothing\"}},",
        );
        let error = Description::parse(&linked).expect_err("a link to nothing");
        assert!(
            format!("{error:#}").contains("a link to no operation"),
            "{error:#}"
        );
        let old = TINY.replace("3.1.0", "3.0.3");
        assert!(Description::parse(&old).is_err(), "3.0 is not 3.1");
        let description = Description::parse(TINY).expect("consistent");
        let unknown = serde_json::json!({"oneOf": [{"type": "string"}]});
        assert!(description.validate(&unknown, &Value::Null).is_err());
    }
}
