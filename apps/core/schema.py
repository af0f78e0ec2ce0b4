"""OpenAPI post-processing: every operation documents the errors any request to it can meet.

Views document their own success answers and the errors particular to them. What every request can get
(a malformed body or query, no or a bad token, a role that is not enough, an unknown id, a body too large
or of another type, the login throttle) is added here once, with the shapes the exception handler
(apps/core/api_errors.py) really returns, so a client generated from the schema knows them all.
"""

ERROR = {
    "type": "object",
    "description": "An error that is not about one field: a human-readable message.",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
VALIDATION_ERROR = {
    "type": "object",
    "description": "Bad input: `detail` with a message, or each bad field with its messages.",
    "additionalProperties": True,
}
COMMON = {
    "400": ("Bad input (body, query or path).", "ValidationError"),
    "401": ("No credentials, or credentials that are not valid.", "Error"),
    "403": ("The user's role does not allow this.", "Error"),
    "404": ("No such object.", "Error"),
    "413": ("The request body is too large.", "Error"),
    "415": ("The request body's content type is not accepted.", "Error"),
    "429": ("Too many requests (login throttle).", "Error"),
}


def add_common_errors(result, generator, request, public):
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", ERROR)
    schemas["ValidationError"] = VALIDATION_ERROR
    for path in result.get("paths", {}).values():
        for method, operation in path.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            for code, (description, component) in COMMON.items():
                if code in responses:
                    continue
                responses[code] = {
                    "description": description,
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}},
                }
    return result
