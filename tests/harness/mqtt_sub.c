/*
 * tests/harness/mqtt_sub.c - the tests' MQTT subscriber (see mqtt_sub.h).
 */
#include "harness/mqtt_sub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "harness/util.h"

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags,
                       const mosquitto_property *props)
{
    (void)mosq;
    (void)flags;
    (void)props;
    ((struct h_mqtt_sub *)obj)->connected = rc == 0;
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int qos_count,
                         const int *granted, const mosquitto_property *props)
{
    (void)mosq;
    (void)mid;
    (void)props;
    ((struct h_mqtt_sub *)obj)->subscribed = qos_count == 1 && granted[0] <= 2;
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *m,
                       const mosquitto_property *props)
{
    struct h_mqtt_sub *s = obj;
    const mosquitto_property *p;
    bool first = true;

    (void)mosq;
    s->received++;
    free(s->payload);
    s->payload = strndup(m->payload, (size_t)m->payloadlen);
    s->n_props = 0;
    for (p = props; s->n_props < H_MQTT_SUB_MAX_PROPS; first = false) {
        char *name = NULL, *value = NULL;

        p = mosquitto_property_read_string_pair(first ? props : p, MQTT_PROP_USER_PROPERTY, &name,
                                                &value, !first);
        if (p == NULL)
            break;
        snprintf(s->prop_names[s->n_props], sizeof(s->prop_names[0]), "%s", name);
        snprintf(s->prop_values[s->n_props], sizeof(s->prop_values[0]), "%s", value);
        s->n_props++;
        free(name);
        free(value);
    }
}

bool h_mqtt_sub_loop_until(struct h_mqtt_sub *s, const bool *flag, int want, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;

    while (!(flag != NULL ? *flag : s->received >= want)) {
        if (h_now_ms() >= deadline)
            return false;
        mosquitto_loop(s->mosq, 50, 1);
    }
    return true;
}

int h_mqtt_sub_start(struct h_mqtt_sub *s, int port, const char *topic, int timeout_ms)
{
    const char *why = NULL;

    memset(s, 0, sizeof(*s));
    s->mosq = mosquitto_new(NULL, true, s);
    if (s->mosq == NULL) {
        fprintf(stderr, "mqtt subscriber: mosquitto_new failed\n");
        return -1;
    }
    mosquitto_int_option(s->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_connect_v5_callback_set(s->mosq, on_connect);
    mosquitto_subscribe_v5_callback_set(s->mosq, on_subscribe);
    mosquitto_message_v5_callback_set(s->mosq, on_message);
    if (mosquitto_connect(s->mosq, "127.0.0.1", port, 30) != MOSQ_ERR_SUCCESS)
        why = "connect failed";
    else if (!h_mqtt_sub_loop_until(s, &s->connected, 0, timeout_ms))
        why = "no CONNACK";
    else if (mosquitto_subscribe_v5(s->mosq, NULL, topic, 1, 0, NULL) != MOSQ_ERR_SUCCESS)
        why = "subscribe failed";
    else if (!h_mqtt_sub_loop_until(s, &s->subscribed, 0, timeout_ms))
        why = "no SUBACK";
    if (why == NULL)
        return 0;
    fprintf(stderr, "mqtt subscriber on 127.0.0.1:%d, topic %s: %s\n", port, topic, why);
    h_mqtt_sub_stop(s);
    return -1;
}

const char *h_mqtt_sub_prop(const struct h_mqtt_sub *s, const char *name)
{
    for (int i = 0; i < s->n_props; i++)
        if (strcmp(s->prop_names[i], name) == 0)
            return s->prop_values[i];
    return NULL;
}

void h_mqtt_sub_stop(struct h_mqtt_sub *s)
{
    if (s->mosq != NULL) {
        mosquitto_disconnect(s->mosq);
        mosquitto_destroy(s->mosq);
    }
    free(s->payload);
    memset(s, 0, sizeof(*s));
}
