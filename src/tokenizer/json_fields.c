/* Messages that name the tokenizer's file ("<file>: <message>"), used by every part of the
 * tokenizer, and the typed members of tokenizer.json's objects that its readers share. */
#include "tokenizer/json_fields.h"

#include <stdarg.h>
#include <stdio.h>

dw_status dw__tok_fail(const dw_tokenizer *tok, dw_error *err, dw_status st, const char *fmt, ...) {
    char msg[DW_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return dw_error_set(err, st, "%s: %s", tok->name, msg);
}

dw_status dw__tok_json_bool(const dw_tokenizer *tok, json_t *obj, const char *where, const char *key,
                            int def, int *out, dw_error *err) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return DW_OK;
    }
    if (!json_is_boolean(v))
        return dw__tok_fail(tok, err, DW_ERR_FORMAT, "%s.%s must be true or false", where, key);
    *out = json_is_true(v);
    return DW_OK;
}

dw_status dw__tok_json_str(const dw_tokenizer *tok, json_t *obj, const char *where, const char *key,
                           const char **out, size_t *len, dw_error *err) {
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (len) *len = 0;
    if (!v || json_is_null(v)) return DW_OK;
    if (!json_is_string(v)) return dw__tok_fail(tok, err, DW_ERR_FORMAT, "%s.%s must be a string", where, key);
    *out = json_string_value(v);
    if (len) *len = json_string_length(v);
    return DW_OK;
}
