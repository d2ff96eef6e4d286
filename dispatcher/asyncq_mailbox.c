/*
 * dispatcher/asyncq_mailbox.c - the job hand-over between the loop and a store thread
 * (struct aq_mailbox in asyncq_int.h), and job-list helpers, shared by both store backends.
 */
#include "asyncq_int.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

void aq_mailbox_init(struct aq_mailbox *mb)
{
    memset(mb, 0, sizeof(*mb));
    pthread_mutex_init(&mb->mu, NULL);
    mb->notify_fd = -1;
}

int aq_mailbox_start(struct aq_mailbox *mb, void *(*fn)(void *), void *arg, int notify_fd,
                     struct sy_error *err)
{
    int rc;

    mb->notify_fd = notify_fd;
    rc = pthread_create(&mb->thread, NULL, fn, arg);
    if (rc != 0) {
        sy_error_set(err, "cannot start the store thread: %s", strerror(rc));
        return SY_EIO;
    }
    mb->started = 1;
    return 0;
}

void aq_mailbox_join(struct aq_mailbox *mb)
{
    if (!mb->started)
        return;
    pthread_join(mb->thread, NULL);
    mb->started = 0;
}

void aq_job_list_free(struct aq_job *head)
{
    while (head != NULL) {
        struct aq_job *next = head->next;

        aq_job_free(head);
        head = next;
    }
}

struct aq_job *aq_job_list_join(struct aq_job *a, struct aq_job *b)
{
    struct aq_job *t = a;

    if (a == NULL)
        return b;
    while (t->next != NULL)
        t = t->next;
    t->next = b;
    return a;
}

void aq_mailbox_destroy(struct aq_mailbox *mb)
{
    aq_job_list_free(mb->in_head);
    aq_job_list_free(mb->done_head);
    mb->in_head = mb->in_tail = mb->done_head = mb->done_tail = NULL;
    pthread_mutex_destroy(&mb->mu);
}

void aq_mailbox_push(struct aq_mailbox *mb, struct aq_job *job)
{
    struct aq_job *tail = job;

    while (tail->next != NULL)
        tail = tail->next;
    pthread_mutex_lock(&mb->mu);
    if (mb->in_tail != NULL)
        mb->in_tail->next = job;
    else
        mb->in_head = job;
    mb->in_tail = tail;
    pthread_mutex_unlock(&mb->mu);
}

struct aq_job *aq_mailbox_take_in_locked(struct aq_mailbox *mb)
{
    struct aq_job *head = mb->in_head;

    mb->in_head = mb->in_tail = NULL;
    return head;
}

void aq_mailbox_hand_back(struct aq_mailbox *mb, struct aq_job *head)
{
    struct aq_job *tail = head;
    uint64_t one = 1;
    int wake;

    if (head == NULL)
        return;
    while (tail->next != NULL)
        tail = tail->next;
    pthread_mutex_lock(&mb->mu);
    /*
     * Wake the loop only when the done list was empty: a non-empty one has been announced
     * already, and the loop reads the eventfd before it takes the list, so that announcement
     * is still to be acted on and covers these jobs too.
     */
    wake = mb->done_head == NULL;
    if (mb->done_tail != NULL)
        mb->done_tail->next = head;
    else
        mb->done_head = head;
    mb->done_tail = tail;
    pthread_mutex_unlock(&mb->mu);
    /* An eventfd: the write only fails if the counter would overflow, which it cannot here. */
    if (wake && write(mb->notify_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_err("[asyncq] cannot wake the loop: %s", strerror(errno));
}

struct aq_job *aq_mailbox_take_done(struct aq_mailbox *mb)
{
    struct aq_job *head;

    pthread_mutex_lock(&mb->mu);
    head = mb->done_head;
    mb->done_head = mb->done_tail = NULL;
    pthread_mutex_unlock(&mb->mu);
    return head;
}
