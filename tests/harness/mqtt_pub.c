/*
 * tests/harness/mqtt_pub.c - the tests' MQTT publisher (see mqtt_pub.h). Test thread only.
 */
#include "harness/mqtt_pub.h"

#include <string.h>

#include "harness/util.h"

static void on_connect(struct mosquitto *m, void *obj, int rc)
{
    (void)m;
    if (rc == 0)
        ((struct h_mqtt_pub *)obj)->connected = true;
}

static void on_publish(struct mosquitto *m, void *obj, int mid)
{
    (void)m;
    (void)mid;
    ((struct h_mqtt_pub *)obj)->acked++;
}

int h_mqtt_pub_open(struct h_mqtt_pub *p, int port)
{
    int64_t deadline = h_now_ms() + 10000;

    memset(p, 0, sizeof(*p));
    p->m = mosquitto_new(NULL, true, p);
    if (p->m == NULL)
        return -1;
    mosquitto_int_option(p->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_connect_callback_set(p->m, on_connect);
    mosquitto_publish_callback_set(p->m, on_publish);
    if (mosquitto_connect(p->m, "127.0.0.1", port, 30) != MOSQ_ERR_SUCCESS)
        return -1;
    while (!p->connected && h_now_ms() < deadline)
        mosquitto_loop(p->m, 50, 1);
    return p->connected ? 0 : -1;
}

int h_mqtt_pub_send(struct h_mqtt_pub *p, const char *topic, const void *payload, size_t len,
                    int qos, const mosquitto_property *props)
{
    int want = p->acked + 1;
    int64_t deadline = h_now_ms() + 10000;

    if (mosquitto_publish_v5(p->m, NULL, topic, (int)len, payload, qos, false, props) !=
        MOSQ_ERR_SUCCESS)
        return -1;
    if (qos == 0) {
        mosquitto_loop(p->m, 0, 1);
        return 0;
    }
    while (p->acked < want && h_now_ms() < deadline)
        if (mosquitto_loop(p->m, 50, 1) != MOSQ_ERR_SUCCESS)
            return -1;
    return p->acked >= want ? 0 : -1;
}

void h_mqtt_pub_close(struct h_mqtt_pub *p)
{
    if (p->m != NULL) {
        mosquitto_disconnect(p->m);
        mosquitto_loop(p->m, 10, 1);
        mosquitto_destroy(p->m);
    }
    p->m = NULL;
}
