/*  hgp_keys.h - who may speak on the bus: CURVE certificates, the ZAP
 *  handler and the cluster name
 *
 *  The bus is authenticated with ZeroMQ CURVE (RFC 26) unless bus/curve is
 *  0. The broker holds a keypair; every actor and every client holds a
 *  certificate of its own; the broker admits on its actor endpoint only
 *  the actor certificates it trusts and on its client endpoint only the
 *  client certificates it trusts. The two sets are separate ZAP domains,
 *  so a client certificate cannot register an actor. The files, all in
 *  CZMQ's zcert format, live under bus/keys (default "var/keys"):
 *
 *      broker.cert, broker.cert_secret   the broker's keypair; the public
 *                                        half is what actors and clients
 *                                        check the broker against
 *      brokers/NAME.cert                 more broker keys actors and
 *                                        clients trust (other brokers of
 *                                        the cluster, a key being rotated)
 *      actors/NAME.cert[_secret]         actor certificates: the broker
 *                                        trusts every NAME.cert here; an
 *                                        actor uses NAME = bus/actor_cert
 *      clients/NAME.cert[_secret]        the same for clients (gateway,
 *                                        CLI), NAME = bus/client_cert
 *
 *  A secret file is needed only where the key is used (broker.cert_secret
 *  on broker hosts, actors/NAME.cert_secret on that actor's host). The
 *  broker's ZAP handler (hgp_keys_zap_actor) reads actors/ and clients/
 *  again whenever either directory changes, so adding or removing a
 *  certificate needs no restart (existing connections stay up until they
 *  reconnect). bin/hgp-keys creates them (README, "Key handling").
 *
 *  The cluster name (bus/cluster, default "hgp") is in every beacon and
 *  READY, so two clusters that can hear or reach each other do not mix.
 *
 *  An hgp_keys_t is read only once made, so many threads may share one
 *  (the gateway's workers do); it must outlive every socket it set up.
 */
#ifndef HGP_KEYS_H_INCLUDED
#define HGP_KEYS_H_INCLUDED

#include <czmq.h>
#include "hgp_config.h"
#include "hgp_codec.h"

#define HGP_KEY_TXT         40          /* chars of a Z85 public key        */
#define HGP_CLUSTER_MAX     HGP_CLUSTER_NAME_MAX   /* bytes of a cluster name */
#define HGP_ZAP_ACTORS      "actors"    /* ZAP domain of the actor endpoint */
#define HGP_ZAP_CLIENTS     "clients"   /* ZAP domain of the client endpoint */

typedef struct _hgp_keys_t hgp_keys_t;

/*  What the process is on the bus, so what it loads */
typedef enum {
    HGP_KEYS_BROKER,            /* broker.cert_secret                       */
    HGP_KEYS_ACTOR,             /* actors/<bus/actor_cert>, trusted brokers */
    HGP_KEYS_CLIENT,            /* clients/<bus/client_cert>, trusted brokers */
    HGP_KEYS_LISTENER           /* trusted brokers only (discovery)         */
} hgp_keys_role_t;

/*  Check bus/curve, bus/cluster, bus/keys, bus/actor_cert and
    bus/client_cert. NULL when good, else one message to free. */
char *hgp_keys_config_check (hgp_config_t *config);

/*  Load what role needs. NULL when CURVE is on and a file is missing or
    unreadable; then *error_p (if not NULL) says which and how to make it,
    for the caller to free. With bus/curve = 0 nothing is loaded. */
hgp_keys_t *hgp_keys_new (hgp_config_t *config, hgp_keys_role_t role,
                          char **error_p);
void hgp_keys_destroy (hgp_keys_t **self_p);

/*  One log line saying how the bus is secured, for who (a process name):
    info with CURVE, a warning that anyone can join without it. Call it
    once per process. */
void hgp_keys_log (hgp_keys_t *self, const char *who);

/*  Is CURVE on */
bool hgp_keys_curve (hgp_keys_t *self);

/*  bus/cluster */
const char *hgp_keys_cluster (hgp_keys_t *self);

/*  Our own public key (broker, actor or client), Z85; "" without CURVE
    or for a listener */
const char *hgp_keys_public (hgp_keys_t *self);

/*  The public key of broker.cert, Z85: the broker at the static
    endpoints; "" without CURVE */
const char *hgp_keys_broker (hgp_keys_t *self);

/*  Do we talk to a broker with this public key (broker.cert or
    brokers/NAME.cert)? Without CURVE: only to key "". */
bool hgp_keys_trusts_broker (hgp_keys_t *self, const char *key);

/*  Make sock a CURVE client of the broker with public key server_key
    (Z85), with our certificate; call before connecting. No-op without
    CURVE. -1 when server_key is not a key. */
int hgp_keys_client_apply (hgp_keys_t *self, zsock_t *sock,
                           const char *server_key);

/*  Make sock a CURVE server with the broker's keypair, checked by the ZAP
    handler in domain (HGP_ZAP_ACTORS or HGP_ZAP_CLIENTS); call before
    binding, with the ZAP handler running. No-op without CURVE. */
void hgp_keys_server_apply (hgp_keys_t *self, zsock_t *sock,
                            const char *domain);

/*  The ZAP handler (RFC 27) of a broker process, as a zactor; args is the
    broker's hgp_keys_t (read until zactor_new returns). Bound on
    inproc://zeromq.zap.01 when zactor_new returns, so start it before
    binding anything with hgp_keys_server_apply. Admits a CURVE peer whose
    key is in the domain's directory (actors/ or clients/), with its Z85
    public key as ZAP User-Id (so every message from it carries that as
    "User-Id" metadata); refuses everything else, logging the first
    refusals and then a count. */
void hgp_keys_zap_actor (zsock_t *pipe, void *args);

/*  The User-Id metadata of a received message frame (what the ZAP handler
    said for its connection), into buf; "" without one */
void hgp_keys_user_id (zmq_msg_t *frame, char *buf, size_t size);

#endif
