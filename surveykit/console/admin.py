"""Admin pages: accounts and their grants, passwords and lockouts.

Every action calls the accounts services the API (``/api/v1/users...``) and the ``surveykit users``
command call, and is audited under the same action names (``user.create``, ``grant.add``,
``grant.remove``, ``user.deactivate``, ``user.password_reset``, ``user.unlock``).
"""

from __future__ import annotations

from typing import Any

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response
from sqlalchemy import select

from surveykit.accounts import services
from surveykit.accounts.models import ROLES, User
from surveykit.audit import services as audit
from surveykit.console.errors import error_page
from surveykit.console.web import _, console_view, flash, render_page, translate
from surveykit.security import Permission
from surveykit.studies import services as studies

USERS_TEMPLATE = "surveykit.console:templates/admin/users.jinja2"
USER_TEMPLATE = "surveykit.console:templates/admin/user.jinja2"
SECRET_TEMPLATE = "surveykit.console:templates/admin/password_shown_once.jinja2"
ALL_STUDIES = "*"


def _policy(request: Request) -> services.AccountPolicy:
    return services.AccountPolicy.from_settings(request.registry.settings)


def _page(request: Request, template: str, values: dict[str, Any], status: int = 200) -> Response:
    return render_page(template, values, request=request, status=status)


def _named_user(request: Request) -> User | None:
    username = request.matchdict["username"]
    if len(username) > 64:
        return None
    return request.dbsession.scalar(select(User).where(User.username == username))


def _unknown_user(request: Request) -> Response:
    return error_page(
        request,
        404,
        translate(request, _("No such account")),
        translate(
            request, _("There is no account named ${username}."), username=request.matchdict["username"]
        ),
    )


def _user_url(request: Request, user: User) -> str:
    return request.route_path("console.user", username=user.username)


# ------------------------------------------------------------------------------------ the list


def _users_values(request: Request, form: dict[str, str], errors: dict[str, str]) -> dict[str, Any]:
    session = request.dbsession
    locked = services.locked_accounts(session, _policy(request))
    users = [
        services.describe_user(session, user, locked.get(user.username))
        for user in services.list_users(session)
    ]
    return {"users": users, "form": form, "errors": errors}


@console_view(
    route_name="console.users",
    request_method="GET",
    permission=Permission.USERS_MANAGE,
    renderer=USERS_TEMPLATE,
)
def users_page(request: Request) -> dict[str, Any]:
    return _users_values(request, {"username": ""}, {})


@console_view(route_name="console.users", request_method="POST", permission=Permission.USERS_MANAGE)
def add_user(request: Request) -> Response:
    """A new account; its password is the one typed, or a generated one shown once."""
    username = request.POST.get("username", "").strip()
    password = request.POST.get("password", "") or None
    try:
        user = services.create_user(request.dbsession, username, password, _policy(request))
    except services.AccountError as exc:
        return _page(
            request,
            USERS_TEMPLATE,
            _users_values(request, {"username": username}, {exc.field or "form": str(exc)}),
            422,
        )
    audit.record_in_request(request, "user.create", target=user.username, via="console")
    if password is not None:
        flash(request, translate(request, _("Account ${username} created."), username=user.username))
        return HTTPSeeOther(location=_user_url(request, user))
    reset = services.reset_password(request.dbsession, user, None, _policy(request))
    audit.record_in_request(
        request, "user.password_reset", target=user.username, generated=True, via="console"
    )
    return _secret_page(request, user, reset.generated, created=True)


def _secret_page(request: Request, user: User, password: str | None, created: bool) -> Response:
    """The generated password, on this response only: never stored, never put in a cookie."""
    response = _page(request, SECRET_TEMPLATE, {"user": user, "password": password, "created": created})
    response.cache_control = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


# ---------------------------------------------------------------------------------- one account


def _user_values(
    request: Request, user: User, grant_form: dict[str, str], errors: dict[str, str]
) -> dict[str, Any]:
    session = request.dbsession
    locked_until = services.account_lock_state(session, user.username, _policy(request))
    study_options = [(ALL_STUDIES, translate(request, _("Every study (admins only)")))] + [
        (study.slug, study.slug) for study in studies.list_studies(session)
    ]
    return {
        "user": services.describe_user(session, user, locked_until),
        "locked_until": locked_until,
        "role_options": [(role, role) for role in ROLES],
        "study_options": study_options,
        "grant_form": grant_form,
        "errors": errors,
        "is_self": user.id == request.identity.user_id,
    }


@console_view(route_name="console.user", request_method="GET", permission=Permission.USERS_MANAGE)
def user_page(request: Request) -> Response:
    user = _named_user(request)
    if user is None:
        return _unknown_user(request)
    return _page(
        request,
        USER_TEMPLATE,
        _user_values(request, user, {"role": "analyst", "study": "", "countries": ""}, {}),
    )


def _countries(text: str) -> list[str] | None:
    codes = [code.strip().upper() for code in text.replace(";", ",").split(",") if code.strip()]
    return codes or None


@console_view(route_name="console.user_grants", request_method="POST", permission=Permission.USERS_MANAGE)
def add_grant(request: Request) -> Response:
    user = _named_user(request)
    if user is None:
        return _unknown_user(request)
    form = {key: request.POST.get(key, "").strip() for key in ("role", "study", "countries")}
    study = None if form["study"] in ("", ALL_STUDIES) else form["study"]
    errors = {}
    if not form["study"]:
        errors["study"] = translate(request, _("Choose a study."))
    else:
        try:
            grant = services.add_grant(
                request.dbsession,
                user,
                form["role"],
                study,
                _countries(form["countries"]),
                request.identity.actor,
            )
        except services.AccountError as exc:
            errors[exc.field or "form"] = str(exc)
    if errors:
        return _page(request, USER_TEMPLATE, _user_values(request, user, form, errors), 422)
    described = services.describe_grant(request.dbsession, grant)
    audit.record_in_request(request, "grant.add", target=user.username, via="console", **described)
    flash(request, translate(request, _("Grant added to ${username}."), username=user.username))
    return HTTPSeeOther(location=_user_url(request, user))


@console_view(
    route_name="console.user_grant_revoke", request_method="POST", permission=Permission.USERS_MANAGE
)
def revoke_grant(request: Request) -> Response:
    user = _named_user(request)
    if user is None:
        return _unknown_user(request)
    grant_id = int(request.matchdict["grant_id"])
    try:
        grant = services.remove_grant(request.dbsession, user, grant_id)
    except services.AccountError as exc:
        return error_page(request, 404, translate(request, _("No such grant")), str(exc))
    audit.record_in_request(
        request, "grant.remove", target=user.username, grant=grant_id, role=grant.role, via="console"
    )
    flash(request, translate(request, _("Grant removed from ${username}."), username=user.username))
    return HTTPSeeOther(location=_user_url(request, user))


@console_view(route_name="console.user_deactivate", request_method="POST", permission=Permission.USERS_MANAGE)
def deactivate(request: Request) -> Response:
    user = _named_user(request)
    if user is None:
        return _unknown_user(request)
    if user.id == request.identity.user_id:
        values = _user_values(request, user, {"role": "analyst", "study": "", "countries": ""}, {})
        values["errors"] = {
            "deactivate": translate(request, _("You cannot deactivate your own account here."))
        }
        return _page(request, USER_TEMPLATE, values, 422)
    services.deactivate_user(request.dbsession, user)
    audit.record_in_request(request, "user.deactivate", target=user.username, via="console")
    flash(
        request,
        translate(
            request,
            _("${username} is deactivated: their sessions and tablets stopped working."),
            username=user.username,
        ),
    )
    return HTTPSeeOther(location=_user_url(request, user))


@console_view(route_name="console.user_password", request_method="POST", permission=Permission.USERS_MANAGE)
def reset_password(request: Request) -> Response:
    """A generated password, shown once: the admin hands it over, the person changes it."""
    user = _named_user(request)
    if user is None:
        return _unknown_user(request)
    reset = services.reset_password(request.dbsession, user, None, _policy(request))
    audit.record_in_request(
        request,
        "user.password_reset",
        target=user.username,
        generated=True,
        sessions_ended=reset.sessions_ended,
        lockouts_cleared=reset.lockouts_cleared,
        via="console",
    )
    return _secret_page(request, user, reset.generated, created=False)


@console_view(route_name="console.user_unlock", request_method="POST", permission=Permission.USERS_MANAGE)
def unlock(request: Request) -> Response:
    user = _named_user(request)
    if user is None:
        return _unknown_user(request)
    was_locked = services.account_lock_state(request.dbsession, user.username, _policy(request))
    cleared = services.unlock_account(request.dbsession, user)
    audit.record_in_request(
        request,
        "user.unlock",
        target=user.username,
        was_locked_until=was_locked.isoformat() if was_locked else None,
        lockouts_cleared=cleared,
        via="console",
    )
    flash(request, translate(request, _("${username} can sign in again."), username=user.username))
    return HTTPSeeOther(location=_user_url(request, user))
