"""Key names of the Valkey store and guard, for a single server and for a Valkey Cluster.

Single-server layout (the original one, still used without ``cluster=True``):

* state ``<state prefix><job_id>``, its version hash ``{<state key>}:version``;
* guard keys ``<lease prefix>{<resource_id>}:resource|occurrences|fence|occurrence:<time>``.

Cluster layout: every key of one job carries the same hash tag, derived from the job id, so
one script can touch all of them. The tag is the id with ``%``, ``{`` and ``}`` escaped
(``%25``, ``%7B``, ``%7D``): a brace in an id can neither end the tag early nor start a new
one. Store keys still END with the id as given, so ``SCAN MATCH *job-state*<job_id>`` finds
them: state ``<state prefix>{<tag>}:<job_id>``, version ``<state prefix>{<tag>}:version:<job_id>``,
run ledger ``<state prefix>{<tag>}:ledger:<job_id>``.
Guard keys keep the single-server names with the escaped tag; for an id without ``%{}`` they
are byte for byte the same, so leases and fence counters carry over between layouts.
"""

from __future__ import annotations

from dataclasses import dataclass

_ESCAPES = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D"})


def hash_tag(identifier: str) -> str:
    """``{...}``: the cluster hash tag of a job (or resource) id, braces and ``%`` escaped."""
    return "{" + identifier.translate(_ESCAPES) + "}"


@dataclass(frozen=True, slots=True)
class StateKeys:
    """The keys of one job's state in one layout."""

    state: str
    version: str
    #: The run-ledger stream (same slot as the state).
    ledger: str


def single_server_state_keys(prefix: str, job_id: str) -> StateKeys:
    state = prefix + job_id
    # The whole state key as hash tag puts the pair in one slot; a '}' inside would end the
    # tag early, so such keys go without one (only a cluster cares, and it uses the layout below).
    if "}" in state:
        return StateKeys(state, f"{state}:version", f"{state}:ledger")
    return StateKeys(state, f"{{{state}}}:version", f"{{{state}}}:ledger")


def cluster_state_keys(prefix: str, job_id: str) -> StateKeys:
    tag = hash_tag(job_id)
    return StateKeys(f"{prefix}{tag}:{job_id}", f"{prefix}{tag}:version:{job_id}", f"{prefix}{tag}:ledger:{job_id}")


def guard_base(prefix: str, resource_id: str, cluster: bool) -> str:
    """The common start of a resource's guard keys (the hash tag included)."""
    return prefix + (hash_tag(resource_id) if cluster else "{" + resource_id + "}")
