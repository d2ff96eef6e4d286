/*
 * destinations/dest.c - the destination registry (scheme -> vtable) and the attribute envelope
 * shared by the kinds that have no native place for attributes. See dest.h.
 */
#include "dest.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static const struct dest_ops *const kinds[] = {
    &dest_file_ops, &dest_redis_ops, &dest_kafka_ops, &dest_mqtt_ops, &dest_http_ops,
};

/* The vtable for URI's scheme, or NULL. `https` goes to the http kind. */
static const struct dest_ops *dest_kind(const char *uri)
{
    size_t n = strcspn(uri, ":");

    if (uri[n] != ':')
        return NULL;
    if (n == 5 && strncmp(uri, "https", 5) == 0)
        return &dest_http_ops;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (strlen(kinds[i]->scheme) == n && strncmp(uri, kinds[i]->scheme, n) == 0)
            return kinds[i];
    }
    return NULL;
}

int dest_open(struct event_base *base, const char *uri, struct dest **out, struct sy_error *err)
{
    const struct dest_ops *ops = dest_kind(uri);

    *out = NULL;
    if (ops == NULL) {
        sy_error_set(err, "%s: no destination of this kind", uri);
        return SY_EINVAL;
    }
    return ops->create(base, uri, out, err);
}

int dest_send(struct dest *d, const struct dest_msg *msg, dest_done_fn *done, void *arg)
{
    return d->ops->send(d, msg, done, arg);
}

const char *dest_state(const struct dest *d)
{
    return d->ops->state != NULL ? d->ops->state(d) : "open";
}

void dest_destroy(struct dest *d)
{
    if (d != NULL)
        d->ops->destroy(d);
}

char *dest_envelope(const struct dest_msg *msg, size_t *len)
{
    json_t *root, *body, *attrs;
    char *s;

    if (msg->n_attrs == 0) {
        s = malloc(msg->len + 1);
        if (s == NULL)
            return NULL;
        memcpy(s, msg->body, msg->len);
        s[msg->len] = '\0';
        *len = msg->len;
        return s;
    }
    body = json_loadb(msg->body, msg->len, JSON_DECODE_ANY, NULL);
    if (body == NULL) /* not JSON (cannot happen for our payloads): carry it as a string */
        body = json_stringn(msg->body, msg->len);
    root = json_object();
    attrs = json_object();
    if (root == NULL || attrs == NULL || body == NULL) {
        json_decref(root);
        json_decref(attrs);
        json_decref(body);
        return NULL;
    }
    json_object_set_new(root, "body", body);
    for (size_t i = 0; i < msg->n_attrs; i++) {
        const struct dest_attr *a = &msg->attrs[i];
        json_t *v = NULL;

        if (a->is_number) {
            char *end;
            long long n = strtoll(a->value, &end, 10);

            if (end != a->value && *end == '\0')
                v = json_integer(n);
        }
        if (v == NULL)
            v = json_string(a->value);
        if (v == NULL) {
            /* Not UTF-8: keep the attribute, with each byte past ASCII shown as '?'. */
            char *copy = strdup(a->value);

            for (char *p = copy; p != NULL && *p != '\0'; p++) {
                if ((unsigned char)*p >= 0x80)
                    *p = '?';
            }
            v = copy != NULL ? json_string(copy) : NULL;
            free(copy);
        }
        if (v == NULL || json_object_set_new(attrs, a->name, v) != 0) {
            json_decref(root);
            json_decref(attrs);
            return NULL; /* out of memory: the send fails and is retried */
        }
    }
    json_object_set_new(root, "attributes", attrs);
    s = json_dumps(root, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(root);
    if (s != NULL)
        *len = strlen(s);
    return s;
}
