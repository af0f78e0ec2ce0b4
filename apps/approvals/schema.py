"""OpenAPI post-processing: the operations the two-person policy may hold document their 202 answer
{"approval_request", "status", "expires_at", "detail"} beside their own (apps/approvals/gate.py)."""

PENDING = {
    "type": "object",
    "description": "The action waits for a second admin's approval (two-person policy).",
    "properties": {
        "approval_request": {"type": "integer", "description": "GET /v1/approvals/{id}"},
        "status": {"type": "string", "enum": ["pending"]},
        "expires_at": {"type": "string", "format": "date-time"},
        "detail": {"type": "string"},
    },
    "required": ["approval_request", "status", "expires_at", "detail"],
}
V1 = "/v1/backup-recovery"
GATED = {
    ("delete", f"{V1}/database/backups/{{id}}"),
    ("post", f"{V1}/database/backups/{{id}}/restore"),
    ("post", f"{V1}/disaster-recovery/failover"),
    ("post", f"{V1}/disaster-recovery/point-in-time-recovery"),
    ("post", f"{V1}/retention/enforce-policies"),
}


def add_approval_answers(result, generator, request, public):
    result.setdefault("components", {}).setdefault("schemas", {})["ApprovalPending"] = PENDING
    ref = {"$ref": "#/components/schemas/ApprovalPending"}
    for method, path in GATED:
        operation = result.get("paths", {}).get(path, {}).get(method)
        if operation is None:
            continue
        responses = operation.setdefault("responses", {})
        accepted = responses.get("202")
        if accepted is None:
            responses["202"] = {"description": PENDING["description"], "content": {"application/json": {"schema": ref}}}
            continue
        content = accepted.setdefault("content", {}).setdefault("application/json", {})
        own = content.get("schema")
        content["schema"] = {"anyOf": [own, ref]} if own else ref
        accepted["description"] = (accepted.get("description") or "Accepted") + " Or: " + PENDING["description"]
    return result
