//! CRUD for prompt cards and test cases, and suite import/export.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiQuery, IdPath};
use super::suite_upload::SuiteUpload;
use super::{ApiError, ApiJson, AppState, Envelope, ErrorBody, Reply, Scope, ok};
use crate::domain::{AssertionSpec, limits};
use crate::domain::{PromptCard, Template, TestCase};
use crate::sandbox::{ParameterChecks, SandboxError};
use crate::store::{self, CardInput, CardPage, TestCaseInput};
use crate::suite::{Suite, SuitePlan, UploadedFiles};

type St = State<Arc<AppState>>;

pub fn card_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_cards, create_card))
        .routes(routes!(import_suite))
        .routes(routes!(get_card, update_card, delete_card))
        .routes(routes!(export_card))
}

pub fn test_case_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(list_test_cases, create_test_case)).routes(routes!(
        get_test_case,
        update_test_case,
        delete_test_case
    ))
}

/// `{"deleted": id}`: what a delete removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    pub deleted: i64,
}

/// A card with its test cases (`GET /api/prompt-cards/{id}`).
#[derive(Debug, Serialize, ToSchema)]
struct CardWithCases {
    #[serde(flatten)]
    card: PromptCard,
    test_cases: Vec<TestCase>,
}

/// A new or updated prompt card.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CardBody {
    title: String,
    #[serde(default)]
    description: String,
    prompt_template: String,
    #[serde(default)]
    variables: Option<Vec<String>>,
    /// Custom template filters (`{{ x | name }}`): name -> JavaScript
    /// whose value is the filter function, e.g. `(s, n) => s.repeat(n)`.
    /// They run in the sandbox as the prompt is rendered.
    #[serde(default)]
    filters: BTreeMap<String, String>,
}

impl CardBody {
    fn validate(self, scope: Scope) -> Result<CardInput, ApiError> {
        if self.title.trim().is_empty() {
            return Err(ApiError::bad_request("title must not be empty"));
        }
        if self.prompt_template.trim().is_empty() {
            return Err(ApiError::bad_request("prompt_template must not be empty"));
        }
        limits::check_template(&self.prompt_template)?;
        crate::suite::filters::check_names(&self.filters).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let names: Vec<String> = self.filters.keys().cloned().collect();
        let used = Template::parse_with_filters(&self.prompt_template, &names)
            .map_err(|e| ApiError::bad_request(format!("prompt_template: {e}")))?
            .variables();
        let variables = match self.variables {
            None => used,
            Some(declared) => {
                let undeclared: Vec<&String> = used.iter().filter(|v| !declared.contains(v)).collect();
                if !undeclared.is_empty() {
                    return Err(ApiError::bad_request(format!(
                        "prompt_template uses undeclared variable(s) {undeclared:?}"
                    )));
                }
                declared
            }
        };
        limits::check_card(&self.title, &self.description, &self.prompt_template, &variables)?;
        Ok(CardInput {
            tenant_id: scope.0,
            title: self.title,
            description: self.description,
            prompt_template: self.prompt_template,
            variables,
            filters: self.filters,
        })
    }
}

/// Refuses a card whose filters do not compile, each named.
async fn check_filters(s: &AppState, filters: &BTreeMap<String, String>) -> Result<(), ApiError> {
    for (name, function) in filters {
        match s.engine.sandbox().check_script(function).await {
            Ok(()) => {}
            Err(SandboxError::Internal(fault)) => {
                tracing::warn!(filter = %name, %fault, "filter check failed in the sandbox")
            }
            Err(e) => return Err(ApiError::bad_request(format!("filters.{name}: {e}"))),
        }
    }
    Ok(())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Words in the title or description (case-insensitive).
    #[serde(default)]
    search: Option<String>,
    /// From 1.
    #[serde(default)]
    page: Option<u64>,
    /// 1 to 500; 20 when absent.
    #[serde(default)]
    limit: Option<u64>,
}

/// Prompt cards, newest first, a page at a time.
#[utoipa::path(get, path = "/", tag = "prompt-cards", params(ListQuery), responses(
    (status = 200, body = Envelope<CardPage>), (status = "4XX", body = ErrorBody)))]
async fn list_cards(State(s): St, scope: Scope, ApiQuery(q): ApiQuery<ListQuery>) -> Reply<CardPage> {
    let page = q.page.unwrap_or(1);
    let limit = q.limit.unwrap_or(20);
    if page == 0 || !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("page must be >= 1 and limit within 1..=500"));
    }
    let found = s.engine.store().list_cards(scope.0, q.search.as_deref(), page, limit).await?;
    Ok((StatusCode::OK, ok(found)))
}

/// Creates a card; its variables are the template's unless listed.
#[utoipa::path(post, path = "/", tag = "prompt-cards", request_body = CardBody, responses(
    (status = 201, body = Envelope<PromptCard>), (status = "4XX", body = ErrorBody)))]
async fn create_card(State(s): St, scope: Scope, ApiJson(body): ApiJson<CardBody>) -> Reply<PromptCard> {
    let input = body.validate(scope)?;
    check_filters(&s, &input.filters).await?;
    let card = s.engine.store().create_card(&input).await?;
    Ok((StatusCode::CREATED, ok(card)))
}

/// A card with its test cases.
#[utoipa::path(get, path = "/{id}", tag = "prompt-cards", params(("id" = i64, Path)), responses(
    (status = 200, body = Envelope<CardWithCases>), (status = "4XX", body = ErrorBody)))]
async fn get_card(State(s): St, scope: Scope, IdPath(id): IdPath<i64>) -> Reply<CardWithCases> {
    let card = find_card(&s, scope, id).await?;
    let test_cases = s.engine.store().test_cases_of(id).await?;
    Ok((StatusCode::OK, ok(CardWithCases { card, test_cases })))
}

/// Replaces a card's fields.
#[utoipa::path(put, path = "/{id}", tag = "prompt-cards", params(("id" = i64, Path)), request_body = CardBody,
    responses((status = 200, body = Envelope<PromptCard>), (status = "4XX", body = ErrorBody)))]
async fn update_card(
    State(s): St,
    scope: Scope,
    IdPath(id): IdPath<i64>,
    ApiJson(body): ApiJson<CardBody>,
) -> Reply<PromptCard> {
    let owner = find_card(&s, scope, id).await?.tenant_id;
    let input = CardInput { tenant_id: owner, ..body.validate(scope)? };
    check_filters(&s, &input.filters).await?;
    let card = s
        .engine
        .store()
        .update_card(id, &input)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("prompt card {id} not found")))?;
    Ok((StatusCode::OK, ok(card)))
}

/// Deletes a card and its test cases.
#[utoipa::path(delete, path = "/{id}", tag = "prompt-cards", params(("id" = i64, Path)), responses(
    (status = 200, body = Envelope<Deleted>), (status = "4XX", body = ErrorBody)))]
async fn delete_card(State(s): St, scope: Scope, IdPath(id): IdPath<i64>) -> Reply<Deleted> {
    find_card(&s, scope, id).await?;
    if !s.engine.store().delete_card(id).await? {
        return Err(ApiError::not_found(format!("prompt card {id} not found")));
    }
    Ok((StatusCode::OK, ok(Deleted { deleted: id })))
}

/// Card `id`, if the request's tenant may see it (404 otherwise, as for
/// an unknown id).
pub(super) async fn find_card(s: &AppState, scope: Scope, id: i64) -> Result<PromptCard, ApiError> {
    let card = s.engine.store().card(id).await?.filter(|card| scope.sees(card.tenant_id));
    card.ok_or_else(|| ApiError::not_found(format!("prompt card {id} not found")))
}

/// A new or updated test case.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TestCaseBody {
    prompt_card_id: i64,
    name: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    input_variables: Map<String, Value>,
    #[serde(default)]
    expected_output: Option<String>,
    #[serde(default)]
    assertions: Vec<AssertionSpec>,
    /// 0..=1: the test passes when its weighted score reaches it.
    #[serde(default)]
    threshold: Option<f64>,
    /// JavaScript of `output` and `context` (an expression, or a function
    /// body that returns) whose result replaces the model's output before
    /// the assertions: promptfoo's `options.transform`.
    #[serde(default)]
    transform: Option<String>,
}

async fn validate_test_case(s: &AppState, scope: Scope, body: TestCaseBody) -> Result<(i64, TestCaseInput), ApiError> {
    let card = find_card(s, scope, body.prompt_card_id).await?;
    if body.name.trim().is_empty() {
        return Err(ApiError::bad_request("name must not be empty"));
    }
    limits::check_test_case(&body.name, &body.input_variables, body.expected_output.as_deref(), &body.assertions)?;
    let missing: Vec<&String> = card.variables.iter().filter(|v| !body.input_variables.contains_key(*v)).collect();
    if !missing.is_empty() {
        return Err(ApiError::bad_request(format!(
            "input_variables lacks variable(s) {missing:?} of prompt card {}",
            card.id
        )));
    }
    for a in &body.assertions {
        s.engine.sandbox().assertion_plugin_for(scope.0, &a.kind).map_err(|e| ApiError::bad_request(e.to_string()))?;
        if a.weight.is_some_and(|w| !(w >= 0.0 && w.is_finite())) {
            return Err(ApiError::bad_request(format!("assertion `{}`: weight must be a non-negative number", a.kind)));
        }
    }
    let mut checks = ParameterChecks::new(s.engine.sandbox(), scope.0);
    for (j, a) in body.assertions.iter().enumerate() {
        match checks.check(a, body.expected_output.as_deref()).await {
            Ok(()) => {}
            // A fault of the sandbox is not the request's: the parameters
            // are checked at run time, as for a plugin without `check`.
            Err(SandboxError::Internal(fault)) => {
                tracing::warn!(assertion_type = %a.kind, %fault, "parameter check failed in the sandbox");
            }
            Err(e) => return Err(ApiError::bad_request(format!("assertions[{j}] `{}`: {e}", a.kind))),
        }
    }
    if let Some(script) = &body.transform {
        match checks.check_transform(script).await {
            Ok(()) => {}
            Err(SandboxError::Internal(fault)) => tracing::warn!(%fault, "transform check failed in the sandbox"),
            Err(e) => return Err(ApiError::bad_request(e.to_string())),
        }
    }
    if let Some(t) = body.threshold.filter(|t| !(0.0..=1.0).contains(t)) {
        return Err(ApiError::bad_request(format!("threshold must be 0..=1, got {t}")));
    }
    Ok((
        card.id,
        TestCaseInput {
            name: body.name,
            input_variables: body.input_variables,
            expected_output: body.expected_output,
            assertions: body.assertions,
            threshold: body.threshold,
            transform: body.transform,
        },
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct CaseQuery {
    prompt_card_id: i64,
}

/// A card's test cases, oldest first.
#[utoipa::path(get, path = "/", tag = "test-cases", params(CaseQuery), responses(
    (status = 200, body = Envelope<Vec<TestCase>>), (status = "4XX", body = ErrorBody)))]
async fn list_test_cases(State(s): St, scope: Scope, ApiQuery(q): ApiQuery<CaseQuery>) -> Reply<Vec<TestCase>> {
    find_card(&s, scope, q.prompt_card_id).await?;
    Ok((StatusCode::OK, ok(s.engine.store().test_cases_of(q.prompt_card_id).await?)))
}

/// Adds a test case to a card; its assertions' types must be known.
#[utoipa::path(post, path = "/", tag = "test-cases", request_body = TestCaseBody, responses(
    (status = 201, body = Envelope<TestCase>), (status = "4XX", body = ErrorBody)))]
async fn create_test_case(State(s): St, scope: Scope, ApiJson(body): ApiJson<TestCaseBody>) -> Reply<TestCase> {
    let (card_id, input) = validate_test_case(&s, scope, body).await?;
    let created = s.engine.store().create_test_case(card_id, &input).await?;
    // The card was deleted between the check and the insert.
    let created = created.ok_or_else(|| ApiError::not_found(format!("prompt card {card_id} not found")))?;
    Ok((StatusCode::CREATED, ok(created)))
}

/// Test case `id`, if the request's tenant may see its card.
async fn find_test_case(s: &AppState, scope: Scope, id: i64) -> Result<TestCase, ApiError> {
    let not_found = || ApiError::not_found(format!("test case {id} not found"));
    let tc = s.engine.store().test_case(id).await?.ok_or_else(not_found)?;
    find_card(s, scope, tc.prompt_card_id).await.map_err(|_| not_found())?;
    Ok(tc)
}

/// One test case.
#[utoipa::path(get, path = "/{id}", tag = "test-cases", params(("id" = i64, Path)), responses(
    (status = 200, body = Envelope<TestCase>), (status = "4XX", body = ErrorBody)))]
async fn get_test_case(State(s): St, scope: Scope, IdPath(id): IdPath<i64>) -> Reply<TestCase> {
    let tc = find_test_case(&s, scope, id).await?;
    Ok((StatusCode::OK, ok(tc)))
}

/// Replaces a test case's fields (it stays on its card).
#[utoipa::path(put, path = "/{id}", tag = "test-cases", params(("id" = i64, Path)), request_body = TestCaseBody,
    responses((status = 200, body = Envelope<TestCase>), (status = "4XX", body = ErrorBody)))]
async fn update_test_case(
    State(s): St,
    scope: Scope,
    IdPath(id): IdPath<i64>,
    ApiJson(body): ApiJson<TestCaseBody>,
) -> Reply<TestCase> {
    let existing = find_test_case(&s, scope, id).await?;
    if existing.prompt_card_id != body.prompt_card_id {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("test case {id} belongs to prompt card {}; it cannot move", existing.prompt_card_id),
        ));
    }
    let (_, input) = validate_test_case(&s, scope, body).await?;
    let tc = s
        .engine
        .store()
        .update_test_case(id, &input)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("test case {id} not found")))?;
    Ok((StatusCode::OK, ok(tc)))
}

/// Deletes a test case.
#[utoipa::path(delete, path = "/{id}", tag = "test-cases", params(("id" = i64, Path)), responses(
    (status = 200, body = Envelope<Deleted>), (status = "4XX", body = ErrorBody)))]
async fn delete_test_case(State(s): St, scope: Scope, IdPath(id): IdPath<i64>) -> Reply<Deleted> {
    find_test_case(&s, scope, id).await?;
    if !s.engine.store().delete_test_case(id).await? {
        return Err(ApiError::not_found(format!("test case {id} not found")));
    }
    Ok((StatusCode::OK, ok(Deleted { deleted: id })))
}

/// `POST /api/prompt-cards/import`: a suite as YAML, JSON `{suite, files}`
/// or multipart (see `suite_upload.rs`); its `file://` references read only
/// the files that came with it. Importing a suite again updates its cards
/// (matched by title) instead of adding copies: 201 when every card is
/// new, else 200.
#[utoipa::path(post, path = "/import", tag = "prompt-cards",
    request_body(description = "The suite", content(
        (String = "application/yaml"),
        (super::suite_upload::SuiteJson = "application/json"),
        (super::suite_upload::SuiteForm = "multipart/form-data"))),
    responses(
        (status = 201, description = "Every card is new", body = Envelope<Imported>),
        (status = 200, description = "Some cards existed and were updated", body = Envelope<Imported>),
        (status = "4XX", body = ErrorBody)))]
async fn import_suite(State(s): St, scope: Scope, upload: SuiteUpload) -> Reply<Imported> {
    let suite = read_suite(&upload.yaml, upload.files)?;
    let plan = plan_suite(&s.engine, &suite, scope).await?;
    let store = s.engine.store();
    let mut cards = Vec::new();
    let mut any_updated = false;
    for planned in plan.cards {
        let store::Imported { card, test_case_ids, updated } = store.import_card(&planned.card, &planned.cases).await?;
        any_updated |= updated;
        cards.push(ImportedCard { prompt_card: card, label: planned.label, test_case_ids, updated });
    }
    let status = if any_updated { StatusCode::OK } else { StatusCode::CREATED };
    let providers = suite.providers.into_iter().map(|p| p.id).collect();
    Ok((status, ok(Imported { cards, providers, warnings: suite.warnings })))
}

/// A suite from its YAML and the files that came with it (nothing else is
/// readable).
pub(super) fn read_suite(yaml: &str, files: std::collections::BTreeMap<String, String>) -> Result<Suite, ApiError> {
    let files = UploadedFiles::new(files).map_err(|e| ApiError::bad_request(format!("files: {e}")))?;
    Suite::parse(yaml, &files).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The suite checked against this host's plugins (types known, parameters
/// accepted by each type's `check`), its cards owned by the request's tenant.
pub(super) async fn plan_suite(
    engine: &crate::engine::Engine,
    suite: &Suite,
    scope: Scope,
) -> Result<SuitePlan, ApiError> {
    let sandbox = engine.sandbox().clone();
    let mut plan = suite
        .plan(|kind| sandbox.assertion_plugin_for(scope.0, kind).map(|_| ()))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    suite.check_parameters(&sandbox, scope.0).await.map_err(|e| ApiError::bad_request(e.to_string()))?;
    for planned in &mut plan.cards {
        planned.card.tenant_id = scope.0;
    }
    Ok(plan)
}

/// The reply of an import.
#[derive(Debug, Serialize, ToSchema)]
struct Imported {
    cards: Vec<ImportedCard>,
    /// The suite's provider ids (`adapter:model`), in its order.
    providers: Vec<String>,
    /// Parts of the suite that were ignored, and why.
    warnings: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct ImportedCard {
    prompt_card: crate::domain::PromptCard,
    /// The prompt's label in the suite.
    label: String,
    /// In the suite's order.
    test_case_ids: Vec<i64>,
    /// The card existed (same title) and was updated.
    updated: bool,
}

/// The card and its test cases as a suite (YAML) that imports back as it was.
#[utoipa::path(get, path = "/{id}/export", tag = "prompt-cards", params(("id" = i64, Path)), responses(
    (status = 200, description = "The suite", content_type = "application/yaml", body = String),
    (status = "4XX", body = ErrorBody)))]
async fn export_card(State(s): St, scope: Scope, IdPath(id): IdPath<i64>) -> Result<impl IntoResponse, ApiError> {
    let card = find_card(&s, scope, id).await?;
    let cases = s.engine.store().test_cases_of(id).await?;
    let yaml =
        Suite::export(&card, &cases).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/yaml")], yaml))
}
