//! The demo catalog the storefront seeds on first start: ten categories and 300 products
//! with believable names, descriptions, prices and stock, all derived from the product
//! number so that every run (and every test) sees the same catalog.
//!
//! Product `prod-NNNNN` belongs to category `(N - 1) % 10`, so neighbouring ids spread over
//! every category. About one product in thirteen is out of stock and two in thirteen have
//! only one to three left, so the page's "in stock" filter and low-stock badges have
//! something to show. Images are served by the example itself (`/images/<category>/<id>.svg`,
//! see `web.rs`), so the page needs no network beyond the server.

use harper::prelude::*;

use crate::schema::{Category, Product};

/// How many products the demo catalog holds.
pub const PRODUCT_COUNT: usize = 300;

/// One category's range: its id, display name, description, three brands (cheaper to
/// dearer) and ten kinds of item with a one-line description and a base price.
struct Line {
    id: &'static str,
    name: &'static str,
    description: &'static str,
    brands: [&'static str; 3],
    items: [(&'static str, &'static str, f64); 10],
}

const LINES: [Line; 10] = [
    Line {
        id: "electronics",
        name: "Electronics",
        description: "Headphones, chargers, keyboards and the small gadgets of every day.",
        brands: ["Voltra", "Nimbus", "Arcwave"],
        items: [
            (
                "Wireless Earbuds",
                "True wireless earbuds with a pocket charging case and 24 hours of playback.",
                49.0,
            ),
            (
                "Noise-Cancelling Headphones",
                "Over-ear headphones that hush trains and open-plan offices alike.",
                129.0,
            ),
            (
                "Bluetooth Speaker",
                "A splash-proof speaker with a full sound for its size and a 12-hour battery.",
                39.0,
            ),
            (
                "65W USB-C Charger",
                "Charges a laptop, a tablet and a phone from one compact plug.",
                29.0,
            ),
            (
                "Mechanical Keyboard",
                "Tactile switches, a sturdy aluminium frame and a detachable cable.",
                89.0,
            ),
            (
                "Wireless Mouse",
                "A quiet, comfortable mouse that pairs with up to three devices.",
                24.0,
            ),
            (
                "Smart Watch",
                "Tracks steps, sleep and heart rate, and shows notifications at a glance.",
                149.0,
            ),
            (
                "Portable SSD 1TB",
                "Pocket-sized storage with transfers up to 1,000 MB/s over USB-C.",
                99.0,
            ),
            (
                "HD Webcam",
                "A 1080p camera with autofocus and two microphones for clear calls.",
                45.0,
            ),
            (
                "Streaming Stick",
                "Turns any TV with HDMI into a smart TV; 4K and HDR included.",
                35.0,
            ),
        ],
    },
    Line {
        id: "books",
        name: "Books",
        description: "Novels, cookbooks, guides and the occasional page-turner.",
        brands: ["Paperback", "Hardcover", "Collector's Edition"],
        items: [
            (
                "The Quiet Harbour",
                "A slow-burning mystery set in a fishing village where nobody tells the whole truth.",
                12.0,
            ),
            (
                "Rust in Practice",
                "A hands-on guide to building fast, reliable services, one crate at a time.",
                39.0,
            ),
            (
                "Salt, Fire & Bread",
                "Everyday recipes built on a handful of techniques, with photographs of every step.",
                28.0,
            ),
            (
                "Atlas of Small Islands",
                "Maps and stories of fifty islands most of us will never visit.",
                32.0,
            ),
            (
                "The Gardener's Year",
                "Month-by-month advice for a productive vegetable patch.",
                22.0,
            ),
            (
                "Stars Over the Desert",
                "A beginner's guide to the night sky, with seasonal star charts.",
                18.0,
            ),
            (
                "A Short History of Tea",
                "From ancient trade routes to the modern cup, told in brisk chapters.",
                16.0,
            ),
            (
                "Midnight Express to Lisbon",
                "A spy thriller that crosses Europe in a single night.",
                14.0,
            ),
            (
                "Drawing Every Day",
                "Fifteen-minute exercises that turn doodles into confident sketches.",
                20.0,
            ),
            (
                "The Clockmaker's Daughter",
                "A family saga spanning three generations of a Swiss watchmaking dynasty.",
                15.0,
            ),
        ],
    },
    Line {
        id: "toys",
        name: "Toys",
        description: "Building sets, puzzles and games for curious minds of every age.",
        brands: ["Tinker", "Brightfox", "Wonderloom"],
        items: [
            (
                "Wooden Block Set",
                "Eighty smooth beech blocks in natural and painted finishes.",
                29.0,
            ),
            (
                "1000-Piece Puzzle",
                "A detailed harbour scene printed on thick, snug-fitting pieces.",
                19.0,
            ),
            (
                "Remote Control Car",
                "A fast, rugged off-roader with a rechargeable battery.",
                45.0,
            ),
            (
                "Plush Bear",
                "A soft, huggable bear, machine washable and safe from birth.",
                18.0,
            ),
            (
                "Marble Run",
                "Clip-together tracks, funnels and spirals for endless layouts.",
                34.0,
            ),
            (
                "Building Bricks Space Station",
                "A 650-piece orbital station with two astronauts and a docking shuttle.",
                59.0,
            ),
            (
                "Family Board Game",
                "A quick trading game for two to six players aged eight and up.",
                27.0,
            ),
            (
                "Kite",
                "A bright ripstop kite that flies in light winds; line and spool included.",
                16.0,
            ),
            (
                "Science Kit",
                "Twenty safe experiments with crystals, magnets and colour-changing liquids.",
                32.0,
            ),
            (
                "Train Set",
                "A wooden railway with a bridge, a station and a magnetic locomotive.",
                49.0,
            ),
        ],
    },
    Line {
        id: "home",
        name: "Home & Kitchen",
        description: "Cookware, lighting and the things that make a house a home.",
        brands: ["Hearth", "Maple & Co", "Lumen"],
        items: [
            (
                "Cast Iron Skillet",
                "A pre-seasoned 26 cm pan that goes from hob to oven to table.",
                35.0,
            ),
            (
                "Electric Kettle",
                "Boils a litre in under three minutes, with a keep-warm setting.",
                29.0,
            ),
            (
                "Chef's Knife",
                "A 20 cm stainless blade, balanced and sharp out of the box.",
                42.0,
            ),
            (
                "Linen Throw",
                "A soft stonewashed throw for the sofa or the foot of the bed.",
                38.0,
            ),
            (
                "Ceramic Table Lamp",
                "A glazed base and linen shade that give a warm, even light.",
                55.0,
            ),
            (
                "French Press",
                "Eight cups of rich coffee in four minutes; borosilicate glass.",
                24.0,
            ),
            (
                "Countertop Blender",
                "A 1200 W blender for smoothies, soups and crushed ice.",
                69.0,
            ),
            (
                "Bath Towel Set",
                "Four thick cotton towels that stay soft wash after wash.",
                32.0,
            ),
            (
                "Storage Baskets",
                "Three woven baskets that tidy shelves, toys and laundry.",
                27.0,
            ),
            (
                "Wall Clock",
                "A silent sweep movement behind a clean, easy-to-read face.",
                22.0,
            ),
        ],
    },
    Line {
        id: "garden",
        name: "Garden",
        description: "Tools, seeds and outdoor comforts for plots of every size.",
        brands: ["Greenthumb", "Fernhill", "Oakridge"],
        items: [
            (
                "Pruning Shears",
                "Bypass secateurs with hardened blades and a comfortable grip.",
                18.0,
            ),
            (
                "Expanding Hose 15m",
                "A light hose that stretches to 15 m and shrinks back for storage.",
                29.0,
            ),
            (
                "Raised Garden Bed",
                "A cedar bed, 120 x 60 cm, ready for vegetables or herbs.",
                79.0,
            ),
            (
                "Heirloom Tomato Seeds",
                "Six varieties of old-fashioned tomatoes, about 150 seeds.",
                6.0,
            ),
            (
                "Solar Path Lights",
                "Eight stake lights that charge by day and glow all evening.",
                34.0,
            ),
            (
                "Bird Feeder",
                "A squirrel-resistant feeder for seeds and suet.",
                21.0,
            ),
            (
                "Garden Kneeler",
                "A padded kneeler that flips into a small bench.",
                36.0,
            ),
            (
                "Compost Bin",
                "A 300 l bin with a hatch to collect finished compost.",
                49.0,
            ),
            (
                "Watering Can",
                "A galvanised 9 l can with a fine brass rose.",
                27.0,
            ),
            (
                "Hammock",
                "A cotton rope hammock with spreader bars and hanging kit.",
                59.0,
            ),
        ],
    },
    Line {
        id: "sports",
        name: "Sports",
        description: "Gear for running, training, climbing and weekend games.",
        brands: ["Stride", "Peakform", "Tempo"],
        items: [
            (
                "Yoga Mat",
                "A 6 mm non-slip mat with a carrying strap.",
                25.0,
            ),
            (
                "Running Shoes",
                "Cushioned daily trainers with a breathable mesh upper.",
                95.0,
            ),
            (
                "Adjustable Dumbbells",
                "A pair that adjusts from 2 to 24 kg with one dial.",
                149.0,
            ),
            (
                "Insulated Water Bottle",
                "Keeps drinks cold for a day or hot for twelve hours; 750 ml.",
                22.0,
            ),
            (
                "Tennis Racket",
                "A light graphite racket with a forgiving sweet spot.",
                79.0,
            ),
            (
                "Football",
                "A hand-stitched size 5 ball for grass and artificial turf.",
                24.0,
            ),
            (
                "Cycling Helmet",
                "A ventilated helmet with a rear light and a fit dial.",
                55.0,
            ),
            (
                "Jump Rope",
                "A fast ball-bearing rope with adjustable cable length.",
                12.0,
            ),
            (
                "Resistance Bands",
                "Five bands from light to extra heavy, with handles and a door anchor.",
                19.0,
            ),
            (
                "Climbing Chalk Bag",
                "A chalk bag with a brush holder and a drawstring closure.",
                16.0,
            ),
        ],
    },
    Line {
        id: "clothing",
        name: "Clothing",
        description: "Everyday basics and outerwear that last.",
        brands: ["Northwind", "Loom & Thread", "Harbor"],
        items: [
            (
                "Merino Crew Sweater",
                "A fine-knit merino sweater that is warm without the bulk.",
                69.0,
            ),
            (
                "Denim Jacket",
                "A classic trucker jacket in rigid indigo denim.",
                79.0,
            ),
            (
                "Organic Cotton T-Shirt",
                "A heavyweight tee cut from organic cotton.",
                19.0,
            ),
            (
                "Rain Jacket",
                "A packable waterproof shell with taped seams and a hood.",
                89.0,
            ),
            (
                "Wool Socks (3 pairs)",
                "Cushioned hiking socks that stay warm when wet.",
                18.0,
            ),
            (
                "Chino Trousers",
                "Slim-fit stretch chinos for the office or the weekend.",
                49.0,
            ),
            (
                "Flannel Shirt",
                "A brushed cotton flannel shirt in a muted check.",
                39.0,
            ),
            (
                "Knit Beanie",
                "A rib-knit beanie in soft recycled wool.",
                15.0,
            ),
            (
                "Leather Belt",
                "Full-grain leather with a solid brass buckle.",
                35.0,
            ),
            (
                "Down Vest",
                "A light down vest that layers under a coat or over a sweater.",
                99.0,
            ),
        ],
    },
    Line {
        id: "beauty",
        name: "Beauty",
        description: "Skincare, haircare and small luxuries.",
        brands: ["Petal", "Aurelle", "Botanica"],
        items: [
            (
                "Hydrating Face Cream",
                "A light daily moisturiser with hyaluronic acid.",
                24.0,
            ),
            (
                "Vitamin C Serum",
                "A brightening serum for morning use, 30 ml.",
                29.0,
            ),
            (
                "Clay Face Mask",
                "A purifying kaolin mask for a weekly reset.",
                16.0,
            ),
            (
                "Argan Hair Oil",
                "Tames frizz and adds shine without weighing hair down.",
                19.0,
            ),
            (
                "Mineral Sunscreen SPF 50",
                "A broad-spectrum, reef-friendly sunscreen for face and body.",
                18.0,
            ),
            (
                "Lip Balm Trio",
                "Three nourishing balms: plain, mint and honey.",
                9.0,
            ),
            (
                "Bamboo Hairbrush",
                "A paddle brush with bamboo pins that glides through knots.",
                14.0,
            ),
            (
                "Eau de Parfum",
                "A fresh blend of bergamot, cedar and white tea, 50 ml.",
                65.0,
            ),
            (
                "Shower Gel",
                "A gentle, soap-free gel scented with lemongrass.",
                8.0,
            ),
            (
                "Nail Care Kit",
                "Clippers, file, cuticle pusher and buffer in a zip case.",
                22.0,
            ),
        ],
    },
    Line {
        id: "automotive",
        name: "Automotive",
        description: "Care, safety and gadgets for the car.",
        brands: ["Roadmate", "Torque", "Highline"],
        items: [
            (
                "Dash Camera",
                "Records in 1440p with night vision and a parking mode.",
                79.0,
            ),
            (
                "Tyre Inflator",
                "A cordless inflator that stops at the pressure you set.",
                49.0,
            ),
            (
                "Jump Starter",
                "Starts petrol engines up to 6 l and charges phones too.",
                89.0,
            ),
            (
                "Phone Mount",
                "A magnetic vent mount that holds firm on bumpy roads.",
                19.0,
            ),
            (
                "Microfibre Wash Kit",
                "Mitt, towels and a pH-neutral shampoo for a scratch-free wash.",
                29.0,
            ),
            (
                "Seat Organizer",
                "A back-seat organiser with a tablet pocket and bottle holders.",
                24.0,
            ),
            (
                "LED Headlight Bulbs",
                "A pair of bright, long-life bulbs that fit most cars.",
                39.0,
            ),
            (
                "Wiper Blades",
                "Silent all-season blades with an easy clip fit.",
                22.0,
            ),
            (
                "Car Vacuum",
                "A handheld vacuum with crevice and brush tools.",
                45.0,
            ),
            (
                "Emergency Kit",
                "Warning triangle, first-aid kit, torch and tow rope in one bag.",
                35.0,
            ),
        ],
    },
    Line {
        id: "grocery",
        name: "Grocery",
        description: "Pantry staples, snacks and good things to drink.",
        brands: ["Harvest", "Fieldstone", "Copper Pot"],
        items: [
            (
                "Single-Origin Coffee Beans",
                "Whole beans with notes of cocoa and cherry, 1 kg.",
                18.0,
            ),
            (
                "Extra Virgin Olive Oil",
                "Cold-pressed olive oil from a single estate, 750 ml.",
                14.0,
            ),
            (
                "Dark Chocolate Bar",
                "Seventy per cent cocoa with a pinch of sea salt.",
                4.0,
            ),
            (
                "Green Tea (50 bags)",
                "A delicate sencha that steeps in two minutes.",
                7.0,
            ),
            (
                "Wildflower Honey",
                "Raw, unfiltered honey from meadow flowers, 500 g.",
                9.0,
            ),
            (
                "Basmati Rice 2kg",
                "Aged long-grain rice that cooks up fluffy and fragrant.",
                6.0,
            ),
            (
                "Roasted Almonds",
                "Lightly salted, slow-roasted almonds, 400 g.",
                8.0,
            ),
            (
                "Sparkling Water (12 cans)",
                "Crisp sparkling water with a hint of lime.",
                7.0,
            ),
            (
                "Artisan Pasta",
                "Bronze-cut rigatoni, dried slowly for a rough texture, 1 kg.",
                5.0,
            ),
            (
                "Granola",
                "Oat clusters with nuts, seeds and dried berries, 750 g.",
                6.0,
            ),
        ],
    },
];

/// Price factor of each brand tier: the first brand is the cheaper line.
const BRAND_FACTOR: [f64; 3] = [0.8, 1.0, 1.35];

/// Stock of product number `n` (1-based): 0 for every thirteenth, 1 to 3 for two in
/// thirteen, otherwise 5 to 59.
fn stock(n: usize) -> i32 {
    match n % 13 {
        0 => 0,
        1 | 2 => (1 + n % 3) as i32,
        _ => (5 + (n * 37) % 55) as i32,
    }
}

/// A shop price: the base price times the brand factor and a small per-product wobble,
/// ending in .99 (or .49 under ten).
fn price(base: f64, brand: usize, n: usize) -> f64 {
    let wobble = 0.9 + ((n * 7919) % 21) as f64 / 100.0; // 0.90 ..= 1.10
    let raw = base * BRAND_FACTOR[brand] * wobble;
    if raw < 10.0 {
        raw.floor() + 0.49
    } else {
        raw.round() - 0.01
    }
}

/// The demo catalog: 10 categories and [`PRODUCT_COUNT`] products, the same on every call.
pub fn demo_catalog() -> (Vec<Category>, Vec<Product>) {
    let categories = LINES
        .iter()
        .map(|line| Category {
            id: line.id.into(),
            name: line.name.into(),
            description: Some(line.description.into()),
            products: Links::new(),
        })
        .collect();
    let products = (1..=PRODUCT_COUNT)
        .map(|n| {
            let line = &LINES[(n - 1) % LINES.len()];
            // Within a category: item kinds first, then the brand tier.
            let k = (n - 1) / LINES.len();
            let (item, about, base) = line.items[k % line.items.len()];
            let brand = (k / line.items.len()) % line.brands.len();
            let id = format!("prod-{n:05}");
            let stock = stock(n);
            Product {
                name: format!("{} {item}", line.brands[brand]),
                description: Some(about.into()),
                price: price(base, brand, n),
                category_id: line.id.into(),
                in_stock: stock > 0,
                stock_quantity: stock,
                image_url: Some(format!("/images/{}/{id}.svg", line.id)),
                created_at: Some(format!(
                    "2026-{:02}-{:02}T09:{:02}:00Z",
                    1 + n % 10,
                    1 + n % 28,
                    n % 60
                )),
                id: id.into(),
                category: Link::new(),
            }
        })
        .collect();
    (categories, products)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn catalog_is_deterministic_and_varied() {
        let (categories, products) = demo_catalog();
        assert_eq!(categories.len(), 10);
        assert_eq!(products.len(), PRODUCT_COUNT);
        assert_eq!(demo_catalog().1, products, "same catalog on every call");

        let names: HashSet<_> = products.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names.len(), products.len(), "product names are unique");
        let category_ids: HashSet<_> = categories.iter().map(|c| c.id.to_string()).collect();
        for p in &products {
            assert!(category_ids.contains(&p.category_id.to_string()));
            assert_eq!(p.in_stock, p.stock_quantity > 0);
            assert!(
                p.price > 0.0 && p.price < 1000.0,
                "{} costs {}",
                p.name,
                p.price
            );
            assert!(
                p.image_url
                    .as_deref()
                    .is_some_and(|u| u.starts_with("/images/"))
            );
        }
        let out = products.iter().filter(|p| p.stock_quantity == 0).count();
        let low = products
            .iter()
            .filter(|p| (1..=3).contains(&p.stock_quantity))
            .count();
        assert!(out >= 10 && low >= 20, "out of stock {out}, low {low}");
        for c in &categories {
            let n = products.iter().filter(|p| p.category_id == c.id).count();
            assert_eq!(n, 30, "{} has {n} products", c.id);
        }
    }
}
