/*  gen: synthetic catalogue and behaviour events for `strata gen`.

    The catalogue comes from a fixed two-to-three level category tree (30 leaves), 50
    brands, per-department adjectives and per-leaf nouns, each with a Chinese form, so
    titles read like a shop ("Acme Hydrating Rose Face Serum 50ml", and for about 15% of
    items "艾克美 保湿 面部精华 50毫升"). Prices are log-normal around a per-leaf median.

    Behaviour is generated session by session. Item popularity is Zipf (exponent 1.0)
    over a random permutation of the catalogue, sampled from a precomputed CDF by binary
    search, and the same weights, regrouped per leaf, drive picks inside a category.
    Each user has one to three favourite leaves, mostly in one department. A session
    walks a funnel per item (view 100%, click 30%, cart 10%, purchase 5%), sometimes
    opens with a search whose words come from a real title and is followed by views of
    items matching it, and sometimes starts by rating an earlier purchase.

    Events are collected in memory, sorted by time and only then numbered, so the file
    reads like a log. One splitmix64 stream seeded from the options drives everything:
    a seed always gives byte-identical files. Malformed lines (truncated JSON, garbage,
    unknown type, empty ids, negative values, wrong column counts) are spread at evenly
    spaced positions so importers' reject paths can be tested and counted.
*/
#include "gen.h"

#include <csv.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

#define DEFAULT_ITEMS  2000
#define DEFAULT_USERS  500
#define DEFAULT_EVENTS 20000
#define DEFAULT_START  1735689600000LL      // 2025-01-01T00:00:00Z
#define SPAN_MS        (30LL * 86400 * 1000) // sessions spread over about a month
#define EVENTS_PER_SESSION 4.7               // mean of the session model below
#define ZH_SHARE       0.15
#define FIELD_MAX      256

enum { UNIT_NONE, UNIT_ML, UNIT_G, UNIT_CM, UNIT_PACK };
enum { MAT_NONE, MAT_TEXTILE, MAT_KITCHEN, MAT_HARD, MAT_OUTDOOR };
enum { EV_VIEW, EV_CLICK, EV_CART, EV_PURCHASE, EV_SEARCH, EV_RATE };
enum { BAD_END, BAD_TRUNC, BAD_GARBAGE, BAD_COLS, BAD_UNCLOSED, BAD_NOID, BAD_PRICE,
       BAD_TYPE, BAD_NOUSER, BAD_NEGTS };

typedef struct {
    const char *en, *zh;
} s_word_t;

typedef struct {
    const char *path;
    int dept;
    s_word_t noun[3];
    int unit;
    double median;          // typical price
    int material;           // MAT_* group
    bool color;
} s_leaf_t;

static const char *s_type_names[] = { "view", "click", "cart", "purchase", "search", "rate" };
static const char *s_item_cols[] = { "item_id", "title", "brand", "category", "price",
                                     "material", "color" };
static const char *s_event_cols[] = { "event_id", "user_id", "item_id", "type", "timestamp",
                                      "session", "query", "value" };

static const s_word_t s_brands[] = {
    { "Acme", "艾克美" }, { "Lumina", "露米娜" }, { "Nordvik", "诺维克" }, { "Kora", "可拉" },
    { "Verdant", "维丹" }, { "Solace", "索蕾" }, { "Brightway", "百维" }, { "Oakhurst", "橡园" },
    { "Zenith", "天顶" }, { "Aurelia", "奥蕾莉" }, { "Pinecrest", "松峰" }, { "Mirelle", "米蕾" },
    { "Vantage", "万坦" }, { "Halcyon", "海森" }, { "Kestrel", "红隼" }, { "Tidewater", "潮汐" },
    { "Ember", "余烬" }, { "Northstar", "北极星" }, { "Cobalt", "钴蓝" }, { "Juniper", "杜松" },
    { "Lark", "云雀" }, { "Meridian", "子午" }, { "Orla", "奥拉" }, { "Quill", "羽笔" },
    { "Rowan", "罗文" }, { "Sable", "黑貂" }, { "Terra", "泰拉" }, { "Umbra", "暗影" },
    { "Vela", "维拉" }, { "Wren", "鹪鹩" }, { "Yarrow", "蓍草" }, { "Zephyr", "西风" },
    { "Alder", "桤木" }, { "Birch", "白桦" }, { "Calla", "马蹄莲" }, { "Dune", "沙丘" },
    { "Elm", "榆木" }, { "Fable", "寓言" }, { "Grove", "林苑" }, { "Haven", "港湾" },
    { "Iris", "鸢尾" }, { "Jade", "翡翠" }, { "Koi", "锦鲤" }, { "Lotus", "莲花" },
    { "Maple", "枫叶" }, { "Nimbus", "云朵" }, { "Opal", "蛋白石" }, { "Pearl", "珍珠" },
    { "Ridge", "山脊" }, { "Sage", "鼠尾草" },
};
#define NBRANDS ((int) (sizeof s_brands / sizeof s_brands[0]))

//  Adjectives per department, in leaf-table department order.
static const s_word_t s_adjs[][6] = {
    { { "Hydrating", "保湿" }, { "Gentle", "温和" }, { "Brightening", "亮白" },
      { "Organic", "有机" }, { "Rose", "玫瑰" }, { "Nourishing", "滋养" } },
    { { "Non-Stick", "不粘" }, { "Stainless", "不锈钢" }, { "Compact", "紧凑" },
      { "Classic", "经典" }, { "Premium", "高级" }, { "Durable", "耐用" } },
    { { "Wireless", "无线" }, { "Portable", "便携" }, { "Smart", "智能" },
      { "Noise-Cancelling", "降噪" }, { "Fast-Charging", "快充" }, { "Ultra-Slim", "超薄" } },
    { { "Slim-Fit", "修身" }, { "Casual", "休闲" }, { "Breathable", "透气" },
      { "Warm", "保暖" }, { "Classic", "经典" }, { "Vintage", "复古" } },
    { { "Lightweight", "轻量" }, { "Waterproof", "防水" }, { "Pro", "专业" },
      { "Foldable", "可折叠" }, { "Ergonomic", "人体工学" }, { "Anti-Slip", "防滑" } },
    { { "Organic", "有机" }, { "Roasted", "烘焙" }, { "Spicy", "香辣" },
      { "Sweet", "香甜" }, { "Premium", "优质" }, { "Fresh", "新鲜" } },
};

static const s_leaf_t s_leaves[] = {
    { "Beauty > Skin Care > Face", 0, { { "Face Serum", "面部精华" }, { "Face Cream", "面霜" },
      { "Cleanser", "洁面乳" } }, UNIT_ML, 25, MAT_NONE, false },
    { "Beauty > Skin Care > Body", 0, { { "Body Lotion", "身体乳" }, { "Body Wash", "沐浴露" },
      { "Hand Cream", "护手霜" } }, UNIT_ML, 12, MAT_NONE, false },
    { "Beauty > Hair Care", 0, { { "Shampoo", "洗发水" }, { "Conditioner", "护发素" },
      { "Hair Oil", "护发精油" } }, UNIT_ML, 10, MAT_NONE, false },
    { "Beauty > Makeup > Lips", 0, { { "Lipstick", "口红" }, { "Lip Balm", "润唇膏" },
      { "Lip Gloss", "唇彩" } }, UNIT_NONE, 15, MAT_NONE, true },
    { "Beauty > Fragrance", 0, { { "Eau de Parfum", "香水" }, { "Body Mist", "身体喷雾" },
      { "Perfume Oil", "香精油" } }, UNIT_ML, 45, MAT_NONE, false },
    { "Home > Kitchen > Cookware", 1, { { "Frying Pan", "煎锅" }, { "Saucepan", "汤锅" },
      { "Wok", "炒锅" } }, UNIT_CM, 35, MAT_KITCHEN, true },
    { "Home > Kitchen > Utensils", 1, { { "Knife Set", "刀具套装" }, { "Spatula", "锅铲" },
      { "Cutting Board", "砧板" } }, UNIT_PACK, 18, MAT_KITCHEN, false },
    { "Home > Bedding", 1, { { "Duvet Cover", "被套" }, { "Pillowcase", "枕套" },
      { "Bed Sheet", "床单" } }, UNIT_NONE, 40, MAT_TEXTILE, true },
    { "Home > Decor > Lighting", 1, { { "Table Lamp", "台灯" }, { "Floor Lamp", "落地灯" },
      { "LED Strip", "灯带" } }, UNIT_NONE, 30, MAT_HARD, true },
    { "Home > Storage", 1, { { "Storage Box", "收纳盒" }, { "Shelf", "置物架" },
      { "Basket", "收纳篮" } }, UNIT_PACK, 15, MAT_HARD, true },
    { "Electronics > Audio > Headphones", 2, { { "Headphones", "耳机" },
      { "Earbuds", "入耳式耳机" }, { "Headset", "头戴式耳机" } }, UNIT_NONE, 60, MAT_NONE, true },
    { "Electronics > Audio > Speakers", 2, { { "Bluetooth Speaker", "蓝牙音箱" },
      { "Soundbar", "回音壁" }, { "Smart Speaker", "智能音箱" } }, UNIT_NONE, 70, MAT_NONE, true },
    { "Electronics > Phones > Accessories", 2, { { "Phone Case", "手机壳" },
      { "Charger", "充电器" }, { "Power Bank", "充电宝" } }, UNIT_NONE, 15, MAT_HARD, true },
    { "Electronics > Computers > Peripherals", 2, { { "Keyboard", "键盘" },
      { "Mouse", "鼠标" }, { "Webcam", "摄像头" } }, UNIT_NONE, 35, MAT_HARD, true },
    { "Electronics > Wearables", 2, { { "Smartwatch", "智能手表" },
      { "Fitness Tracker", "运动手环" }, { "Watch Strap", "表带" } }, UNIT_NONE, 80, MAT_HARD, true },
    { "Clothing > Women > Dresses", 3, { { "Dress", "连衣裙" }, { "Maxi Dress", "长裙" },
      { "Shirt Dress", "衬衫裙" } }, UNIT_NONE, 45, MAT_TEXTILE, true },
    { "Clothing > Women > Tops", 3, { { "Blouse", "女式衬衫" }, { "T-Shirt", "T恤" },
      { "Sweater", "毛衣" } }, UNIT_NONE, 25, MAT_TEXTILE, true },
    { "Clothing > Men > Shirts", 3, { { "Shirt", "衬衫" }, { "Polo Shirt", "POLO衫" },
      { "Oxford Shirt", "牛津纺衬衫" } }, UNIT_NONE, 30, MAT_TEXTILE, true },
    { "Clothing > Men > Outerwear", 3, { { "Jacket", "夹克" }, { "Parka", "派克大衣" },
      { "Down Coat", "羽绒服" } }, UNIT_NONE, 90, MAT_TEXTILE, true },
    { "Clothing > Shoes", 3, { { "Sneakers", "运动鞋" }, { "Boots", "靴子" },
      { "Loafers", "乐福鞋" } }, UNIT_NONE, 70, MAT_HARD, true },
    { "Sports > Fitness > Yoga", 4, { { "Yoga Mat", "瑜伽垫" }, { "Yoga Block", "瑜伽砖" },
      { "Yoga Strap", "瑜伽带" } }, UNIT_NONE, 25, MAT_OUTDOOR, true },
    { "Sports > Fitness > Weights", 4, { { "Dumbbell", "哑铃" }, { "Kettlebell", "壶铃" },
      { "Resistance Band", "弹力带" } }, UNIT_PACK, 30, MAT_OUTDOOR, false },
    { "Sports > Outdoor > Camping", 4, { { "Tent", "帐篷" }, { "Sleeping Bag", "睡袋" },
      { "Camping Chair", "露营椅" } }, UNIT_NONE, 60, MAT_OUTDOOR, true },
    { "Sports > Cycling", 4, { { "Bike Helmet", "自行车头盔" }, { "Bike Light", "车灯" },
      { "Water Bottle", "水壶" } }, UNIT_NONE, 25, MAT_OUTDOOR, true },
    { "Sports > Running", 4, { { "Running Shorts", "跑步短裤" }, { "Running Socks", "跑步袜" },
      { "Armband", "臂包" } }, UNIT_PACK, 20, MAT_TEXTILE, true },
    { "Grocery > Coffee & Tea > Coffee", 5, { { "Coffee Beans", "咖啡豆" },
      { "Ground Coffee", "咖啡粉" }, { "Cold Brew", "冷萃咖啡" } }, UNIT_G, 14, MAT_NONE, false },
    { "Grocery > Coffee & Tea > Tea", 5, { { "Green Tea", "绿茶" }, { "Oolong Tea", "乌龙茶" },
      { "Black Tea", "红茶" } }, UNIT_G, 10, MAT_NONE, false },
    { "Grocery > Snacks", 5, { { "Almonds", "杏仁" }, { "Potato Chips", "薯片" },
      { "Dark Chocolate", "黑巧克力" } }, UNIT_G, 5, MAT_NONE, false },
    { "Grocery > Pantry > Sauces", 5, { { "Soy Sauce", "酱油" }, { "Chili Sauce", "辣椒酱" },
      { "Olive Oil", "橄榄油" } }, UNIT_ML, 8, MAT_NONE, false },
    { "Grocery > Pantry > Noodles & Rice", 5, { { "Rice", "大米" }, { "Udon Noodles", "乌冬面" },
      { "Ramen", "拉面" } }, UNIT_G, 6, MAT_NONE, false },
};
#define NLEAVES ((int) (sizeof s_leaves / sizeof s_leaves[0]))

static const s_word_t s_colors[] = {
    { "black", "黑色" }, { "white", "白色" }, { "red", "红色" }, { "blue", "蓝色" },
    { "green", "绿色" }, { "grey", "灰色" }, { "pink", "粉色" }, { "beige", "米色" },
    { "navy", "藏青色" }, { "yellow", "黄色" },
};
#define NCOLORS ((int) (sizeof s_colors / sizeof s_colors[0]))

static const char *s_materials[][5] = {
    { NULL },
    { "cotton", "linen", "polyester", "wool", "silk" },
    { "stainless steel", "cast iron", "ceramic", "aluminium", "carbon steel" },
    { "plastic", "aluminium", "silicone", "leather", "wood" },
    { "nylon", "polyester", "neoprene", "rubber", "foam" },
};

static const struct {
    const char *en, *zh;
    int size[4];
} s_units[] = {
    { "", "", { 0 } },
    { "ml", "毫升", { 30, 50, 100, 200 } },
    { "g", "克", { 100, 250, 500, 1000 } },
    { "cm", "厘米", { 20, 24, 28, 32 } },
    { "-Pack", "件装", { 2, 3, 4, 6 } },
};

//  Malformed kinds per file, cycled; BAD_UNCLOSED is added at the end of CSV files.
static const int s_bad_kinds[4][6] = {
    { BAD_TRUNC, BAD_GARBAGE, BAD_NOID, BAD_PRICE },                    // items.jsonl
    { BAD_COLS, BAD_NOID, BAD_PRICE },                                  // items.csv
    { BAD_TRUNC, BAD_GARBAGE, BAD_TYPE, BAD_NOUSER, BAD_NEGTS },        // events.jsonl
    { BAD_COLS, BAD_TYPE, BAD_NOUSER, BAD_NEGTS },                      // events.csv
};

typedef struct {
    uint8_t leaf, brand, adj, noun, color, material, size;  // color/material/size: 0 = none
    bool zh;
    int32_t cents;
    float quality;          // mean rating
} s_item_t;

typedef struct {
    int32_t leaf[3];
    int32_t nleaves;
    int32_t pending;        // purchased item not yet rated, or -1
    int64_t busy_until;     // end of the user's last session
} s_user_t;

typedef struct {
    int64_t ts;
    int32_t seq, user, item, session, qitem;
    uint8_t type, value, qmode;   // qmode: 1 = adjective in query, 2 = brand in query
} s_event_t;

typedef struct {
    uint64_t rng;
    int32_t n_items, n_users;
    s_item_t *items;
    int32_t *item_rank;     // popularity rank -> item
    double *item_cdf;
    int32_t *by_leaf;       // items grouped by leaf, most popular first
    double *leaf_cdf;       // cumulative popularity within each leaf's run
    int32_t leaf_start[NLEAVES + 1];
    s_user_t *users;
    int32_t *user_rank;
    double *user_cdf;
    s_event_t *events;
    int64_t n_events, cap;
    int64_t clock, next_start;
    double gap_ms;
    int32_t session;
    int64_t purchases;
} gen_t;

//  Uniform in [0, 1).
static double
s_unit (uint64_t *state)
{
    return (double) (util_splitmix64 (state) >> 11) * 0x1.0p-53;
}

static int32_t
s_below (uint64_t *state, int64_t n)
{
    return (int32_t) (s_unit (state) * (double) n);
}

static double
s_gauss (uint64_t *state)
{
    double u = 1.0 - s_unit (state);
    return sqrt (-2.0 * log (u)) * cos (2.0 * M_PI * s_unit (state));
}

static void
s_zipf (double *cdf, int64_t n, double exponent)
{
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        sum += pow ((double) (i + 1), -exponent);
        cdf[i] = sum;
    }
}

//  First index whose cumulative weight exceeds u times the total.
static int32_t
s_pick (const double *cdf, int32_t n, double u)
{
    double x = u * cdf[n - 1];
    int32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (cdf[mid] > x)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static void
s_shuffle (uint64_t *rng, int32_t *a, int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        a[i] = i;
    for (int32_t i = n - 1; i > 0; i--) {
        int32_t k = s_below (rng, i + 1), t = a[i];
        a[i] = a[k];
        a[k] = t;
    }
}

static void __attribute__ ((format (printf, 4, 5)))
s_cat (char *buf, size_t len, size_t *pos, const char *fmt, ...)
{
    if (*pos >= len)
        return;
    va_list ap;
    va_start (ap, fmt);
    int n = vsnprintf (buf + *pos, len - *pos, fmt, ap);
    va_end (ap);
    if (n > 0)
        *pos += (size_t) n;
}

static void __attribute__ ((format (printf, 3, 4)))
s_fail (char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (err, errlen, fmt, ap);
    va_end (ap);
}

//  Item from a leaf by popularity; any item when leaf < 0 or the leaf is empty.
static int32_t
s_leaf_item (gen_t *self, int32_t leaf)
{
    int32_t lo = leaf >= 0 ? self->leaf_start[leaf] : 0;
    int32_t n = leaf >= 0 ? self->leaf_start[leaf + 1] - lo : 0;
    if (n == 0)
        return self->item_rank[s_pick (self->item_cdf, self->n_items, s_unit (&self->rng))];
    return self->by_leaf[lo + s_pick (self->leaf_cdf + lo, n, s_unit (&self->rng))];
}

static void
s_catalogue (gen_t *self)
{
    uint64_t *rng = &self->rng;
    int32_t count[NLEAVES] = { 0 };
    for (int32_t i = 0; i < self->n_items; i++) {
        s_item_t *it = &self->items[i];
        const s_leaf_t *lf = &s_leaves[s_below (rng, NLEAVES)];
        it->leaf = (uint8_t) (lf - s_leaves);
        //  Each department draws on its own band of 14 brands, overlapping its neighbours.
        it->brand = (uint8_t) ((lf->dept * 8 + s_below (rng, 14)) % NBRANDS);
        it->adj = (uint8_t) s_below (rng, 6);
        it->noun = (uint8_t) s_below (rng, 3);
        it->color = lf->color ? (uint8_t) (1 + s_below (rng, NCOLORS)) : 0;
        it->material = lf->material ? (uint8_t) (1 + s_below (rng, 5)) : 0;
        it->size = lf->unit ? (uint8_t) (1 + s_below (rng, 4)) : 0;
        it->zh = s_unit (rng) < ZH_SHARE;
        double price = lf->median * exp (0.45 * s_gauss (rng)) * (1.0 + 0.2 * it->size);
        if (price >= 5)
            it->cents = (int32_t) price * 100 + 99;
        else
            it->cents = price < 0.49 ? 49 : (int32_t) lround (price * 100);
        it->quality = (float) (2.8 + 2.0 * s_unit (rng));
        count[it->leaf]++;
    }
    s_shuffle (rng, self->item_rank, self->n_items);
    s_zipf (self->item_cdf, self->n_items, 1.0);

    //  Regroup by leaf in rank order, so each run is sorted by popularity.
    int32_t fill[NLEAVES];
    double sum[NLEAVES] = { 0 };
    self->leaf_start[0] = 0;
    for (int l = 0; l < NLEAVES; l++) {
        self->leaf_start[l + 1] = self->leaf_start[l] + count[l];
        fill[l] = self->leaf_start[l];
    }
    for (int32_t r = 0; r < self->n_items; r++) {
        int32_t item = self->item_rank[r], l = self->items[item].leaf;
        sum[l] += 1.0 / (r + 1.0);
        self->leaf_cdf[fill[l]] = sum[l];
        self->by_leaf[fill[l]++] = item;
    }
}

//  A non-empty leaf of the same department, or -1.
static int32_t
s_sibling_leaf (gen_t *self, int32_t leaf)
{
    int32_t cand[NLEAVES], n = 0;
    for (int32_t l = 0; l < NLEAVES; l++)
        if (s_leaves[l].dept == s_leaves[leaf].dept
            && self->leaf_start[l + 1] > self->leaf_start[l])
            cand[n++] = l;
    return n ? cand[s_below (&self->rng, n)] : -1;
}

static void
s_population (gen_t *self)
{
    for (int32_t u = 0; u < self->n_users; u++) {
        s_user_t *user = &self->users[u];
        int32_t want = 1 + s_below (&self->rng, 3);
        user->nleaves = 0;
        user->pending = -1;
        user->busy_until = INT64_MIN;
        while (user->nleaves < want) {
            int32_t leaf = self->items[s_leaf_item (self, -1)].leaf;
            if (user->nleaves > 0 && s_unit (&self->rng) < 0.6)
                leaf = s_sibling_leaf (self, user->leaf[0]);
            user->leaf[user->nleaves++] = leaf;
        }
    }
    s_shuffle (&self->rng, self->user_rank, self->n_users);
    s_zipf (self->user_cdf, self->n_users, 0.6);
}

//  Records one event at the session clock and moves the clock 2-60 s on. Returns NULL
//  once the requested number of events is reached.
static s_event_t *
s_emit (gen_t *self, int32_t user, int32_t item, int type, int value)
{
    if (self->n_events >= self->cap)
        return NULL;
    s_event_t *ev = &self->events[self->n_events];
    *ev = (s_event_t) { .ts = self->clock, .seq = (int32_t) self->n_events, .user = user,
                        .item = item, .session = self->session, .qitem = -1,
                        .type = (uint8_t) type, .value = (uint8_t) value };
    self->n_events++;
    if (type == EV_PURCHASE)
        self->purchases++;
    self->clock += 2000 + s_below (&self->rng, 58000);
    return ev;
}

static void
s_funnel (gen_t *self, int32_t user, int32_t item)
{
    uint64_t *rng = &self->rng;
    if (!s_emit (self, user, item, EV_VIEW, 0) || s_unit (rng) >= 0.30)
        return;
    if (!s_emit (self, user, item, EV_CLICK, 0) || s_unit (rng) >= 1.0 / 3)
        return;
    if (!s_emit (self, user, item, EV_CART, 0) || s_unit (rng) >= 0.5)
        return;
    double r = s_unit (rng);
    if (s_emit (self, user, item, EV_PURCHASE, r < 0.05 ? 3 : r < 0.2 ? 2 : 1))
        self->users[user].pending = item;
}

//  A search built from a popular title of the leaf, then views of items matching it.
static void
s_search (gen_t *self, int32_t user, int32_t leaf)
{
    int32_t src = s_leaf_item (self, leaf);
    int mode = (s_unit (&self->rng) < 0.5 ? 1 : 0) | (s_unit (&self->rng) < 0.2 ? 2 : 0);
    s_event_t *ev = s_emit (self, user, -1, EV_SEARCH, 0);
    if (!ev)
        return;
    ev->qitem = src;
    ev->qmode = (uint8_t) mode;
    const s_item_t *q = &self->items[src];
    int32_t want = 1 + s_below (&self->rng, 3), seen = 0;
    for (int32_t k = self->leaf_start[q->leaf]; k < self->leaf_start[q->leaf + 1]; k++) {
        const s_item_t *it = &self->items[self->by_leaf[k]];
        if (seen == want)
            break;
        if (it->noun != q->noun || it->zh != q->zh || ((mode & 1) && it->adj != q->adj)
            || ((mode & 2) && it->brand != q->brand))
            continue;
        if (s_unit (&self->rng) < 0.6) {
            s_funnel (self, user, self->by_leaf[k]);
            seen++;
        }
    }
    if (seen == 0)
        s_funnel (self, user, src);
}

static void
s_session (gen_t *self)
{
    uint64_t *rng = &self->rng;
    int32_t uid = self->user_rank[s_pick (self->user_cdf, self->n_users, s_unit (rng))];
    s_user_t *user = &self->users[uid];
    self->session++;
    self->clock = self->next_start;
    if (self->clock < user->busy_until)
        self->clock = user->busy_until + 600000;
    self->next_start += 1 + (int64_t) (-self->gap_ms * log (1.0 - s_unit (rng)));

    if (user->pending >= 0 && s_unit (rng) < 0.6) {
        long stars = lround (self->items[user->pending].quality + 0.9 * s_gauss (rng));
        s_emit (self, uid, user->pending, EV_RATE, stars < 1 ? 1 : stars > 5 ? 5 : (int) stars);
        user->pending = -1;
    }
    int steps = 1;
    while (steps < 12 && s_unit (rng) < 0.65)
        steps++;
    if (s_unit (rng) < 0.2) {
        s_search (self, uid, user->leaf[s_below (rng, user->nleaves)]);
        steps--;
    }
    for (int32_t prev = -1; steps > 0; steps--) {
        double r = s_unit (rng);
        int32_t leaf = -1;
        if (prev >= 0 && r < 0.5)
            leaf = self->items[prev].leaf;
        else if (r < 0.8)
            leaf = user->leaf[s_below (rng, user->nleaves)];
        prev = s_leaf_item (self, leaf);
        s_funnel (self, uid, prev);
    }
    user->busy_until = self->clock;
}

static int
s_event_cmp (const void *a, const void *b)
{
    const s_event_t *x = a, *y = b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void
s_title (const s_item_t *it, char *buf, size_t len)
{
    const s_leaf_t *lf = &s_leaves[it->leaf];
    const s_word_t *adj = &s_adjs[lf->dept][it->adj], *noun = &lf->noun[it->noun];
    size_t pos = 0;
    buf[0] = '\0';
    if (it->zh) {
        s_cat (buf, len, &pos, "%s %s", s_brands[it->brand].zh, adj->zh);
        if (it->color)
            s_cat (buf, len, &pos, " %s", s_colors[it->color - 1].zh);
        s_cat (buf, len, &pos, " %s", noun->zh);
    }
    else {
        s_cat (buf, len, &pos, "%s %s", s_brands[it->brand].en, adj->en);
        if (it->color) {
            const char *c = s_colors[it->color - 1].en;
            s_cat (buf, len, &pos, " %c%s", toupper ((unsigned char) c[0]), c + 1);
        }
        s_cat (buf, len, &pos, " %s", noun->en);
    }
    if (it->size)
        s_cat (buf, len, &pos, " %d%s", s_units[lf->unit].size[it->size - 1],
               it->zh ? s_units[lf->unit].zh : s_units[lf->unit].en);
}

static void
s_query (const gen_t *self, const s_event_t *ev, char *buf, size_t len)
{
    const s_item_t *it = &self->items[ev->qitem];
    const s_leaf_t *lf = &s_leaves[it->leaf];
    const s_word_t *brand = &s_brands[it->brand], *adj = &s_adjs[lf->dept][it->adj];
    size_t pos = 0;
    buf[0] = '\0';
    if (ev->qmode & 2)
        s_cat (buf, len, &pos, "%s ", it->zh ? brand->zh : brand->en);
    if (ev->qmode & 1)
        s_cat (buf, len, &pos, "%s ", it->zh ? adj->zh : adj->en);
    s_cat (buf, len, &pos, "%s", it->zh ? lf->noun[it->noun].zh : lf->noun[it->noun].en);
    for (char *p = buf; *p; p++)
        *p = (char) tolower ((unsigned char) *p);
}

static void
s_fields (const gen_t *self, bool events, int64_t row, char fld[][FIELD_MAX])
{
    if (events) {
        const s_event_t *ev = &self->events[row];
        snprintf (fld[0], FIELD_MAX, "e%07" PRId64, row + 1);
        snprintf (fld[1], FIELD_MAX, "u%05" PRId32, ev->user + 1);
        fld[2][0] = '\0';
        if (ev->item >= 0)
            snprintf (fld[2], FIELD_MAX, "i%06" PRId32, ev->item + 1);
        snprintf (fld[3], FIELD_MAX, "%s", s_type_names[ev->type]);
        snprintf (fld[4], FIELD_MAX, "%" PRId64, ev->ts);
        snprintf (fld[5], FIELD_MAX, "s%06" PRId32, ev->session);
        fld[6][0] = fld[7][0] = '\0';
        if (ev->qitem >= 0)
            s_query (self, ev, fld[6], FIELD_MAX);
        if (ev->value)
            snprintf (fld[7], FIELD_MAX, "%d", ev->value);
    }
    else {
        const s_item_t *it = &self->items[row];
        const s_leaf_t *lf = &s_leaves[it->leaf];
        snprintf (fld[0], FIELD_MAX, "i%06" PRId64, row + 1);
        s_title (it, fld[1], FIELD_MAX);
        snprintf (fld[2], FIELD_MAX, "%s", s_brands[it->brand].en);
        snprintf (fld[3], FIELD_MAX, "%s", lf->path);
        snprintf (fld[4], FIELD_MAX, "%d.%02d", (int) (it->cents / 100), (int) (it->cents % 100));
        snprintf (fld[5], FIELD_MAX, "%s",
                  it->material ? s_materials[lf->material][it->material - 1] : "");
        snprintf (fld[6], FIELD_MAX, "%s", it->color ? s_colors[it->color - 1].en : "");
    }
}

static int
s_csv_row (FILE *f, char fld[][FIELD_MAX], int nf)
{
    for (int i = 0; i < nf; i++) {
        if (i > 0 && fputc (',', f) == EOF)
            return -1;
        if (csv_fwrite (f, fld[i], strlen (fld[i])) != 0)
            return -1;
    }
    return fputc ('\n', f) == EOF ? -1 : 0;
}

//  Events: timestamp and value are numbers; empty item_id, query and value are left
//  out. Items: material and color go under "attributes".
static int
s_json_row (FILE *f, bool events, char fld[][FIELD_MAX])
{
    json_t *obj = json_object (), *attrs = events ? NULL : json_object ();
    int rc = obj && (events || attrs) ? 0 : -1;
    for (int i = 0; rc == 0 && i < (events ? 8 : 7); i++) {
        if (events && !fld[i][0] && (i == 2 || i >= 6))
            continue;
        if (events)
            rc = json_object_set_new (obj, s_event_cols[i], i == 4 || i == 7
                                      ? json_integer (strtoll (fld[i], NULL, 10))
                                      : json_string (fld[i]));
        else if (i < 5)
            rc = json_object_set_new (obj, s_item_cols[i], json_string (fld[i]));
        else if (fld[i][0])
            rc = json_object_set_new (attrs, s_item_cols[i], json_string (fld[i]));
    }
    if (rc == 0 && attrs)
        rc = json_object_set (obj, "attributes", attrs);
    if (rc == 0)
        rc = json_dumpf (obj, f, JSON_COMPACT);
    if (rc == 0 && fputc ('\n', f) == EOF)
        rc = -1;
    json_decref (attrs);
    json_decref (obj);
    return rc;
}

static int
s_bad_row (FILE *f, bool events, bool csv, int kind, char fld[][FIELD_MAX], int64_t j)
{
    switch (kind) {
    case BAD_TRUNC:
        if (events)
            return fprintf (f, "{\"event_id\":\"%s\",\"user_id\"\n", fld[0]) < 0 ? -1 : 0;
        return fprintf (f, "{\"item_id\":\"%s\",\"title\"\n", fld[0]) < 0 ? -1 : 0;
    case BAD_GARBAGE:
        return fprintf (f, "<<garbage %" PRId64 ">> ][ not json\n", j) < 0 ? -1 : 0;
    case BAD_COLS:
        return s_csv_row (f, fld, 3);
    case BAD_UNCLOSED:
        return fprintf (f, "\"%s\",\"%s\",\"%s\n", fld[0], fld[1], fld[2]) < 0 ? -1 : 0;
    case BAD_NOID:
        fld[0][0] = '\0';
        break;
    case BAD_PRICE:
        snprintf (fld[4], FIELD_MAX, "-5.00");
        break;
    case BAD_TYPE:
        snprintf (fld[3], FIELD_MAX, "teleport");
        break;
    case BAD_NOUSER:
        fld[1][0] = '\0';
        break;
    case BAD_NEGTS:
        snprintf (fld[4], FIELD_MAX, "-5");
        break;
    default:
        return -1;
    }
    return csv ? s_csv_row (f, fld, events ? 8 : 7) : s_json_row (f, events, fld);
}

//  Writes one file with m malformed lines at evenly spaced positions among the valid
//  rows. In CSV the last one (when m >= 2) is an unclosed quote at the very end, the
//  only place where it cannot swallow valid rows. 0, STRATA_EINVAL (a path too long)
//  or STRATA_EIO.
static int
s_write (gen_t *self, const char *dir, bool events, bool csv, int64_t m, char *err,
         size_t errlen)
{
    char path[PATH_MAX];
    if (snprintf (path, sizeof path, "%s/%s.%s", dir, events ? "events" : "items",
                  csv ? "csv" : "jsonl") >= (int) sizeof path) {
        s_fail (err, errlen, "output path too long");
        return STRATA_EINVAL;
    }
    FILE *f = fopen (path, "w");
    if (!f) {
        s_fail (err, errlen, "cannot create %s: %s", path, strerror (errno));
        return STRATA_EIO;
    }
    const int *kinds = s_bad_kinds[(events ? 2 : 0) + (csv ? 1 : 0)];
    int nkinds = 0, nf = events ? 8 : 7, rc = 0;
    while (kinds[nkinds])
        nkinds++;
    if (csv)
        for (int i = 0; i < nf; i++)
            fprintf (f, "%s%c", events ? s_event_cols[i] : s_item_cols[i],
                     i + 1 < nf ? ',' : '\n');

    char fld[8][FIELD_MAX];
    int64_t n = events ? self->n_events : self->n_items;
    int64_t spread = csv && m >= 2 ? m - 1 : m, j = 0;
    for (int64_t r = 0; r <= n && rc == 0; r++) {
        for (; j < m && rc == 0; j++) {
            if ((j < spread ? (j + 1) * n / (spread + 1) : n) != r)
                break;
            s_fields (self, events, r < n ? r : n - 1, fld);
            snprintf (fld[0], FIELD_MAX, events ? "e%07" PRId64 : "i%06" PRId64, n + j + 1);
            rc = s_bad_row (f, events, csv, j < spread ? kinds[j % nkinds] : BAD_UNCLOSED,
                            fld, j);
        }
        if (r < n && rc == 0) {
            s_fields (self, events, r, fld);
            rc = csv ? s_csv_row (f, fld, nf) : s_json_row (f, events, fld);
        }
    }
    if (ferror (f))
        rc = -1;
    if (fclose (f) != 0)
        rc = -1;
    if (rc != 0) {
        s_fail (err, errlen, "cannot write %s: %s", path, strerror (errno));
        rc = STRATA_EIO;
    }
    return rc;
}

static int
s_mkdirs (const char *dir)
{
    char path[PATH_MAX];
    if (snprintf (path, sizeof path, "%s", dir) >= (int) sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir (path, 0755) != 0 && errno != EEXIST)
            return -1;
        if (c == '\0')
            break;
        *p = c;
    }
    struct stat st;
    if (stat (path, &st) != 0)
        return -1;
    if (!S_ISDIR (st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

int
gen_run (const gen_opts_t *opts, gen_summary_t *summary, char *err, size_t errlen)
{
    gen_t gen = { 0 }, *self = &gen;
    bool *active = NULL;
    int rc = STRATA_ENOMEM;
    if (!opts || !opts->out_dir || !*opts->out_dir) {
        s_fail (err, errlen, "no output directory");
        return STRATA_EINVAL;
    }
    const char *format = opts->format ? opts->format : "jsonl";
    bool csv = strcmp (format, "csv") == 0;
    if (!csv && strcmp (format, "jsonl") != 0) {
        s_fail (err, errlen, "unknown format '%s' (jsonl or csv)", format);
        return STRATA_EINVAL;
    }
    if (opts->items < 0 || opts->users < 0 || opts->events < 0 || opts->malformed < 0
        || opts->start_ms < 0 || opts->items > INT32_MAX || opts->users > INT32_MAX
        || opts->events > INT32_MAX || opts->malformed > INT32_MAX) {
        s_fail (err, errlen, "counts and start time must be between 0 and %d", INT32_MAX);
        return STRATA_EINVAL;
    }
    if (s_mkdirs (opts->out_dir) != 0) {
        //  A name too long or a file in the way is the caller's to change; the rest is
        //  the file system's.
        int bad_name = errno == ENAMETOOLONG || errno == ENOTDIR;
        s_fail (err, errlen, "cannot create %s: %s", opts->out_dir, strerror (errno));
        return bad_name ? STRATA_EINVAL : STRATA_EIO;
    }
    self->rng = opts->seed;
    self->n_items = (int32_t) (opts->items ? opts->items : DEFAULT_ITEMS);
    self->n_users = (int32_t) (opts->users ? opts->users : DEFAULT_USERS);
    self->cap = opts->events ? opts->events : DEFAULT_EVENTS;
    self->next_start = opts->start_ms ? opts->start_ms : DEFAULT_START;
    self->gap_ms = (double) SPAN_MS * EVENTS_PER_SESSION / (double) self->cap;

    size_t ni = (size_t) self->n_items, nu = (size_t) self->n_users;
    self->items = calloc (ni, sizeof *self->items);
    self->item_rank = calloc (ni, sizeof *self->item_rank);
    self->item_cdf = calloc (ni, sizeof *self->item_cdf);
    self->by_leaf = calloc (ni, sizeof *self->by_leaf);
    self->leaf_cdf = calloc (ni, sizeof *self->leaf_cdf);
    self->users = calloc (nu, sizeof *self->users);
    self->user_rank = calloc (nu, sizeof *self->user_rank);
    self->user_cdf = calloc (nu, sizeof *self->user_cdf);
    self->events = calloc ((size_t) self->cap, sizeof *self->events);
    active = calloc (nu, sizeof *active);
    if (!self->items || !self->item_rank || !self->item_cdf || !self->by_leaf
        || !self->leaf_cdf || !self->users || !self->user_rank || !self->user_cdf
        || !self->events || !active) {
        s_fail (err, errlen, "out of memory");
        goto out;
    }
    s_catalogue (self);
    s_population (self);
    while (self->n_events < self->cap)
        s_session (self);
    qsort (self->events, (size_t) self->n_events, sizeof *self->events, s_event_cmp);

    if ((rc = s_write (self, opts->out_dir, false, csv, opts->malformed, err, errlen)) != 0
        || (rc = s_write (self, opts->out_dir, true, csv, opts->malformed, err, errlen)) != 0)
        goto out;
    if (summary) {
        *summary = (gen_summary_t) { .items = self->n_items, .events = self->n_events,
                                     .malformed = 2 * opts->malformed,
                                     .purchases = self->purchases };
        for (int64_t i = 0; i < self->n_events; i++)
            if (!active[self->events[i].user]) {
                active[self->events[i].user] = true;
                summary->users++;
            }
    }
    rc = 0;
out:
    free (active);
    free (self->items);
    free (self->item_rank);
    free (self->item_cdf);
    free (self->by_leaf);
    free (self->leaf_cdf);
    free (self->users);
    free (self->user_rank);
    free (self->user_cdf);
    free (self->events);
    return rc;
}
