"""The forge side of a proposal: push its branch, open a pull request (GitHub's REST API).

:func:`push_branch` pushes with plain ``git push`` (the remote's own credentials: an SSH
key, a credential helper, the token of ``actions/checkout``). :func:`open_pull_request`
calls ``POST /repos/{owner}/{repo}/pulls`` with ``GITHUB_TOKEN``, after ``GET
/repos/{owner}/{repo}/pulls?head=owner:branch`` finds none open for the branch; without
a token it returns the compare URL to open one by hand. :func:`delete_remote_branch`
takes a pushed branch back when the pull request cannot be opened, so nothing is left
half-proposed. API: GitHub REST "Pulls" (2022-11-28). Rationale: ``docs/gitops.md``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import git
import httpx

from reconciler.core.diagnostics import EXIT_USAGE, ModelopsError

API_URL_ENV = "GITHUB_API_URL"
TOKEN_ENV = "GITHUB_TOKEN"
REPOSITORY_ENV = "GITHUB_REPOSITORY"
SERVER_URL_ENV = "GITHUB_SERVER_URL"
DEFAULT_API = "https://api.github.com"
DEFAULT_SERVER = "https://github.com"
API_VERSION = "2022-11-28"
TIMEOUT_S = 30.0
"""Time-out of one forge API request (s)."""

_SLUG = re.compile(r"(?:[:/])([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+?)(?:\.git)?/?$")


class ForgeError(ModelopsError):
    """A push or a forge API call failed; the message names the remote or the forge."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=EXIT_USAGE)


@dataclass(frozen=True)
class PullRequest:
    """What the forge step did.

    Attributes:
        remote: the Git remote pushed to (name), ``url``: its URL.
        branch: the pushed branch; base: the branch the pull request targets.
        number: the pull request's number (0: none opened: no token or no repository).
        url: the pull request's page, or the compare URL to open one (``""`` when the
            remote is not on the forge and ``GITHUB_REPOSITORY`` is not set).
        existing: the pull request was already open for the branch.
    """

    remote: str
    remote_url: str
    branch: str
    base: str
    number: int = 0
    url: str = ""
    existing: bool = False

    def to_dict(self) -> dict:
        """JSON-ready mapping."""
        return dict(self.__dict__)


def repository_slug(remote_url: str) -> str:
    """``owner/repo`` of the pull requests: ``GITHUB_REPOSITORY`` when set, else from a
    GitHub remote URL (``https://github.com/o/r.git``, ``git@github.com:o/r.git``), else
    ``""``."""
    if slug := os.environ.get(REPOSITORY_ENV, "").strip():
        return slug
    server = os.environ.get(SERVER_URL_ENV, DEFAULT_SERVER).split("://", 1)[-1].rstrip("/")
    if server in remote_url and (m := _SLUG.search(remote_url)):
        return f"{m.group(1)}/{m.group(2)}"
    return ""


def push_branch(repo: git.Repo, remote: str, branch: str) -> str:
    """``git push <remote> <branch>:refs/heads/<branch>``; returns the remote's URL.

    Raises:
        ForgeError: no such remote, or the push was rejected or failed (the message
            names the remote and gives git's reason).
    """
    try:
        url = repo.remote(remote).url
    except ValueError:
        names = ", ".join(r.name for r in repo.remotes) or "none"
        raise ForgeError(
            f"no Git remote {remote!r} to push the proposal to (remotes: {names}); add one "
            "or pass --remote"
        ) from None
    try:
        repo.git.push(remote, f"refs/heads/{branch}:refs/heads/{branch}", "--porcelain")
    except git.GitCommandError as exc:
        detail = (exc.stderr or exc.stdout or str(exc)).strip().replace("\n", "; ")
        raise ForgeError(f"push of {branch} to {remote} ({url}) failed: {detail}") from None
    return url


def delete_remote_branch(repo: git.Repo, remote: str, branch: str) -> str:
    """Delete ``branch`` on ``remote``; returns ``""``, or why it could not be deleted."""
    try:
        repo.git.push(remote, "--delete", branch)
    except git.GitCommandError as exc:
        return (exc.stderr or str(exc)).strip().replace("\n", "; ")
    return ""


def compare_url(slug: str, base: str, branch: str) -> str:
    """The forge page that opens a pull request of ``branch`` into ``base``."""
    server = os.environ.get(SERVER_URL_ENV, DEFAULT_SERVER).rstrip("/")
    return f"{server}/{slug}/compare/{base}...{branch}?expand=1"


def _api_error(what: str, api: str, response: httpx.Response) -> ForgeError:
    try:
        detail = response.json().get("message", "")
    except ValueError:
        detail = response.text[:200]
    return ForgeError(f"{what} at {api}: HTTP {response.status_code} {detail}".rstrip())


def open_pull_request(
    *,
    remote: str,
    remote_url: str,
    branch: str,
    base: str,
    title: str,
    body: str,
    client: httpx.Client | None = None,
) -> PullRequest:
    """Open a pull request of the pushed ``branch`` into ``base`` (or find the open one).

    Without ``GITHUB_TOKEN`` or without a repository (:func:`repository_slug`) nothing
    is called: the result carries the compare URL (or none) and number 0.

    Raises:
        ForgeError: the forge answered 4xx/5xx or could not be reached (the message names
            the API URL, the status and GitHub's message).
    """
    slug = repository_slug(remote_url)
    done = PullRequest(remote, remote_url, branch, base)
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not slug:
        return done
    if not token:
        return PullRequest(remote, remote_url, branch, base, url=compare_url(slug, base, branch))
    api = os.environ.get(API_URL_ENV, DEFAULT_API).rstrip("/")
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": API_VERSION,
    }
    owner = slug.split("/", 1)[0]
    http = client or httpx.Client(timeout=TIMEOUT_S)
    try:
        found = http.get(
            f"{api}/repos/{slug}/pulls",
            params={"head": f"{owner}:{branch}", "state": "open"},
            headers=headers,
        )
        if found.status_code >= 400:
            raise _api_error(f"listing the pull requests of {slug}", api, found)
        for pr in found.json():
            return PullRequest(
                remote, remote_url, branch, base, int(pr["number"]), pr["html_url"], True
            )
        made = http.post(
            f"{api}/repos/{slug}/pulls",
            json={"title": title, "head": branch, "base": base, "body": body},
            headers=headers,
        )
        if made.status_code >= 400:
            raise _api_error(f"opening a pull request on {slug}", api, made)
        pr = made.json()
        return PullRequest(remote, remote_url, branch, base, int(pr["number"]), pr["html_url"])
    except httpx.HTTPError as exc:
        raise ForgeError(f"the forge at {api} could not be reached: {exc}") from None
    finally:
        if client is None:
            http.close()
