/*
 * tests/harness/mqtt_sub.h - the tests' MQTT subscriber: a plain blocking libmosquitto client
 * (MQTT v5) on one topic, driven by mosquitto_loop() from the test's thread. It keeps the count
 * of messages received and the payload and user properties of the last one.
 */
#ifndef SY_HARNESS_MQTT_SUB_H
#define SY_HARNESS_MQTT_SUB_H

#include <stdbool.h>

#define H_MQTT_SUB_MAX_PROPS 16

struct mosquitto;

struct h_mqtt_sub {
    struct mosquitto *mosq;
    bool connected, subscribed;
    int received;  /* messages so far */
    char *payload; /* the last message's payload (owned, NUL-terminated) */
    int n_props;   /* the last message's user properties (the first H_MQTT_SUB_MAX_PROPS) */
    char prop_names[H_MQTT_SUB_MAX_PROPS][64];
    char prop_values[H_MQTT_SUB_MAX_PROPS][128];
};

/*
 * Connect S (zeroed here) to 127.0.0.1:PORT and subscribe to TOPIC at QoS 1, waiting up to
 * TIMEOUT_MS for each of CONNACK and SUBACK. Returns 0, or -1 (the reason on stderr; S is then
 * stopped).
 */
int h_mqtt_sub_start(struct h_mqtt_sub *s, int port, const char *topic, int timeout_ms);

/* Run S's loop until *FLAG holds (FLAG NULL: until WANT messages were received) or TIMEOUT_MS
 * passed. True when the condition holds. */
bool h_mqtt_sub_loop_until(struct h_mqtt_sub *s, const bool *flag, int want, int timeout_ms);

/* The value of the last message's user property NAME (borrowed), or NULL. */
const char *h_mqtt_sub_prop(const struct h_mqtt_sub *s, const char *name);

/* Disconnect and free S (no-op when not started); S is zeroed. */
void h_mqtt_sub_stop(struct h_mqtt_sub *s);

#endif
