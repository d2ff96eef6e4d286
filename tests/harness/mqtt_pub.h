/*
 * tests/harness/mqtt_pub.h - the tests' MQTT publisher: a plain blocking libmosquitto client
 * (MQTT v5) driven by mosquitto_loop() from the test's thread; every publish at QoS 1 or 2 waits
 * for the server's acknowledgement (PUBACK / PUBCOMP). The test calls mosquitto_lib_init().
 */
#ifndef SY_HARNESS_MQTT_PUB_H
#define SY_HARNESS_MQTT_PUB_H

#include <stdbool.h>
#include <stddef.h>

#include <mosquitto.h>

struct h_mqtt_pub {
    struct mosquitto *m;
    int acked; /* PUBACK / PUBCOMP seen */
    bool connected;
};

/* Connect P (zeroed here) to 127.0.0.1:PORT, waiting up to 10 s for CONNACK. 0 or -1. */
int h_mqtt_pub_open(struct h_mqtt_pub *p, int port);

/* Publish LEN bytes of PAYLOAD to TOPIC at QOS with the MQTT 5 properties PROPS (may be NULL);
 * at QoS 1 and 2 wait (up to 10 s) for the server's acknowledgement. 0 or -1. */
int h_mqtt_pub_send(struct h_mqtt_pub *p, const char *topic, const void *payload, size_t len,
                    int qos, const mosquitto_property *props);

/* Disconnect and free P (no-op when not open). */
void h_mqtt_pub_close(struct h_mqtt_pub *p);

#endif
