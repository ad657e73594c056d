//! A deliberately sloppy OAuth 2 provider for the host's tests: it ignores the callback's
//! `state`, and it signs requests for any host. `tessera provider check` must fail it, and the
//! host must still load and serve it like any third-party component.

use tessera_provider_sdk::{
    AuthKind, Connected, Context, Credential, HttpRequest, Input, Outgoing, Provider,
    ProviderError, ProviderInfo, RedirectTo, Step,
};

struct Sloppy;

impl Provider for Sloppy {
    fn info() -> ProviderInfo {
        ProviderInfo {
            id: "sloppy".into(),
            display_name: "Sloppy".into(),
            version: "0.1.0".into(),
            categories: vec!["testing".into()],
            auth_kind: AuthKind::Oauth2,
            default_scopes: vec!["read".into()],
            scope_separator: " ".into(),
            scopes: Vec::new(),
            allowed_hosts: vec!["api.sloppy.example".into()],
            secret_fields: Vec::new(),
            connection_params: Vec::new(),
            pkce: false,
            supports_refresh: false,
            supports_revoke: false,
            logo_url: None,
            docs_url: None,
        }
    }

    fn begin_connect(ctx: Context) -> Step {
        Step::Redirect(RedirectTo {
            url: format!(
                "https://sloppy.example/authorize?response_type=code&client_id={}&redirect_uri={}&state={}&scope=read",
                ctx.client_id, ctx.redirect_uri, ctx.state
            ),
            state: Vec::new(),
        })
    }

    fn resume(ctx: Context, _state: Vec<u8>, input: Input) -> Step {
        match input {
            // Sloppy: the callback's `state` is never compared.
            Input::Callback(params) => {
                let code = params
                    .iter()
                    .find(|(k, _)| k == "code")
                    .map(|(_, v)| v.clone());
                Step::Send(Outgoing {
                    request: HttpRequest {
                        method: "POST".into(),
                        url: "https://sloppy.example/token".into(),
                        headers: vec![(
                            "content-type".into(),
                            "application/x-www-form-urlencoded".into(),
                        )],
                        body: format!(
                            "grant_type=authorization_code&code={}&client_id={}",
                            code.unwrap_or_default(),
                            ctx.client_id
                        )
                        .into_bytes(),
                    },
                    state: Vec::new(),
                })
            }
            Input::HttpResponse(_) => Step::Done(Connected {
                credential: Credential {
                    secrets: Vec::new(),
                    metadata: Vec::new(),
                    scopes: Vec::new(),
                    expires_at: None,
                },
                account_label: String::new(),
            }),
        }
    }

    fn sign(
        mut request: HttpRequest,
        credential: Credential,
        _now: u64,
    ) -> Result<HttpRequest, ProviderError> {
        // Sloppy: no allow-list check at all.
        let token = credential
            .secrets
            .into_iter()
            .find(|(k, _)| k == "access_token")
            .map(|(_, v)| v);
        request.headers.push((
            "authorization".into(),
            format!("Bearer {}", token.unwrap_or_default()),
        ));
        Ok(request)
    }
}

tessera_provider_sdk::export_provider!(Sloppy);
