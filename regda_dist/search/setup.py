"""A search's folder and storage: the resolved search saved as search.yaml (never overwritten;
--resume only the same search), and where its Optuna studies live."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from regda_dist import config as C
from regda_dist.folders import SearchFolder
from regda_dist.search.settings import SearchConfig
from regda_dist.search.spec import Search, load_search


def storage_url(settings: SearchConfig, search_dir: Path) -> str:
    """The Optuna storage of a search: search.storage, or SQLite in the search folder."""
    return settings.storage or f"sqlite:///{SearchFolder(search_dir.resolve()).optuna}"


def study_name(search_dir: Path, group: str) -> str:
    return f"{search_dir.name}/{group}"


def to_yaml_dict(search: Search) -> dict:
    """The resolved search as a YAML-able mapping: runnable again by `regda-dist tune`."""
    settings = {**dataclasses.asdict(search.settings), "space": search.space}
    return {**search.cfg.to_dict(), "search": settings}


def prepare_search_dir(search_dir: Path, search: Search, resume: bool) -> None:
    """check_search_dir, then create the folder with search.yaml (a new search)."""
    check_search_dir(search_dir, search, resume)
    saved = SearchFolder(search_dir).spec
    if saved.exists():
        return
    search_dir.mkdir(parents=True, exist_ok=True)
    tmp = saved.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(to_yaml_dict(search), sort_keys=False))
    tmp.replace(saved)


def check_search_dir(search_dir: Path, search: Search, resume: bool) -> None:
    """Refuse to overwrite a search; --resume only the same search."""
    saved = SearchFolder(search_dir).spec
    if saved.exists():
        if not resume:
            raise C.ConfigError(
                f"{search_dir} holds a search; pass --resume to continue it or choose another "
                "--name"
            )
        try:
            again = load_search(saved)
        except C.ConfigError as err:
            raise C.ConfigError(f"cannot --resume: {err}") from None
        if to_yaml_dict(again) != to_yaml_dict(search):
            raise C.ConfigError(f"{saved} differs from this search; cannot --resume")
        return
    if resume:
        raise C.ConfigError(f"{search_dir}: no search to resume (no search.yaml)")
    if search_dir.exists() and any(search_dir.iterdir()):
        raise C.ConfigError(
            f"{search_dir} exists and is not a search folder; choose another --name"
        )
