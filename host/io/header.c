/* FITS headers as lists of 80-character cards. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define CARD 80

struct clred_header {
    char (*cards)[CARD + 1];
    size_t count, capacity;
};

clred_header *clred_header_new(void) { return calloc(1, sizeof(clred_header)); }

void clred_header_free(clred_header *h)
{
    if (h) {
        free(h->cards);
        free(h);
    }
}

clred_header *clred_header_copy(const clred_header *h)
{
    clred_header *c = clred_header_new();
    if (!c || !h)
        return c;
    if (h->count) {
        c->cards = malloc(h->count * sizeof *c->cards);
        if (!c->cards) {
            free(c);
            return NULL;
        }
        memcpy(c->cards, h->cards, h->count * sizeof *c->cards);
        c->count = c->capacity = h->count;
    }
    return c;
}

size_t clred_header_count(const clred_header *h) { return h ? h->count : 0; }

const char *clred_header_card(const clred_header *h, size_t i) { return h && i < h->count ? h->cards[i] : NULL; }

/* Index of the card whose keyword is key, or -1. */
static long find(const clred_header *h, const char *key)
{
    if (!h)
        return -1;
    size_t n = strlen(key);
    for (size_t i = 0; i < h->count; i++) {
        const char *c = h->cards[i];
        if (strncmp(c, key, n) == 0 && (c[n] == ' ' || c[n] == '=') && c[8] == '=')
            return (long)i;
    }
    return -1;
}

clred_status clred_header_append_card(clred_header *h, const char *card)
{
    if (h->count == h->capacity) {
        size_t cap = h->capacity ? h->capacity * 2 : 64;
        void *p = realloc(h->cards, cap * sizeof *h->cards);
        if (!p)
            return clred_fail(CLRED_ERR_MEMORY, "out of memory growing a FITS header");
        h->cards = p;
        h->capacity = cap;
    }
    snprintf(h->cards[h->count], CARD + 1, "%-80.80s", card);
    h->count++;
    return CLRED_OK;
}

static clred_status put(clred_header *h, const char *key, const char *card)
{
    long i = find(h, key);
    if (i >= 0) {
        snprintf(h->cards[i], CARD + 1, "%-80.80s", card);
        return CLRED_OK;
    }
    return clred_header_append_card(h, card);
}

clred_status clred_header_set_double(clred_header *h, const char *key, double value, const char *comment)
{
    char card[128];
    snprintf(card, sizeof card, "%-8.8s= %20.12G / %s", key, value, comment ? comment : "");
    return put(h, key, card);
}

clred_status clred_header_set_string(clred_header *h, const char *key, const char *value, const char *comment)
{
    char quoted[80];
    size_t j = 0;
    quoted[j++] = '\'';
    for (const char *p = value; *p && j < 66; p++) {
        if (*p == '\'')
            quoted[j++] = '\'';
        quoted[j++] = *p;
    }
    while (j < 9)
        quoted[j++] = ' '; /* FITS strings are at least 8 characters */
    quoted[j++] = '\'';
    quoted[j] = '\0';
    char card[160];
    snprintf(card, sizeof card, "%-8.8s= %-20s / %s", key, quoted, comment ? comment : "");
    return put(h, key, card);
}

size_t clred_header_delete(clred_header *h, const char *key)
{
    size_t removed = 0, j = 0;
    for (size_t i = 0; h && i < h->count; i++) {
        const char *c = h->cards[i];
        size_t n = strlen(key);
        int match = strncmp(c, key, n) == 0 && (c[n] == ' ' || c[n] == '=') && c[8] == '=';
        if (match) {
            removed++;
            continue;
        }
        if (j != i)
            memcpy(h->cards[j], h->cards[i], sizeof h->cards[i]);
        j++;
    }
    if (h)
        h->count = j;
    return removed;
}

clred_status clred_header_add_history(clred_header *h, const char *text)
{
    /* 72 characters fit after "HISTORY "; break at a space where one is near. */
    const size_t room = 72;
    size_t len = strlen(text), off = 0;
    do {
        size_t take = len - off;
        if (take > room) {
            take = room;
            for (size_t k = room; k > room / 2; k--)
                if (text[off + k] == ' ') {
                    take = k;
                    break;
                }
        }
        char card[96];
        snprintf(card, sizeof card, "HISTORY %.*s", (int)take, text + off);
        CLRED_TRY(clred_header_append_card(h, card));
        off += take;
        while (off < len && text[off] == ' ')
            off++;
    } while (off < len);
    return CLRED_OK;
}

/* The value field of a card: after "= ", up to a comment slash outside quotes. */
static void value_field(const char *card, char *out, size_t size)
{
    const char *v = card + 10;
    size_t j = 0;
    int in_quote = 0;
    for (const char *p = v; *p && j + 1 < size; p++) {
        if (*p == '\'')
            in_quote = !in_quote;
        if (*p == '/' && !in_quote)
            break;
        out[j++] = *p;
    }
    out[j] = '\0';
}

int clred_header_get_double(const clred_header *h, const char *key, double *value)
{
    long i = find(h, key);
    if (i < 0)
        return 0;
    char field[80];
    value_field(h->cards[i], field, sizeof field);
    char *s = field;
    while (isspace((unsigned char)*s) || *s == '\'')
        s++;
    /* FITS allows D as an exponent letter. */
    for (char *p = s; *p; p++)
        if (*p == 'D' || *p == 'd')
            *p = 'E';
    char *end;
    double v = strtod(s, &end);
    if (end == s)
        return 0;
    *value = v;
    return 1;
}

int clred_header_get_string(const clred_header *h, const char *key, char *value, size_t size)
{
    long i = find(h, key);
    if (i < 0 || size == 0)
        return 0;
    char field[80];
    value_field(h->cards[i], field, sizeof field);
    const char *s = field;
    while (*s == ' ')
        s++;
    size_t j = 0;
    if (*s == '\'') {
        for (s++; *s && j + 1 < size; s++) {
            if (*s == '\'') {
                if (s[1] == '\'') {
                    value[j++] = '\'';
                    s++;
                    continue;
                }
                break;
            }
            value[j++] = *s;
        }
        while (j > 0 && value[j - 1] == ' ')
            j--;
    } else {
        for (; *s && j + 1 < size; s++)
            value[j++] = *s;
        while (j > 0 && value[j - 1] == ' ')
            j--;
    }
    value[j] = '\0';
    return 1;
}
