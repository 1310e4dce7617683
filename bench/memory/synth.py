"""Synthetic long conversations for the memory evaluation (see README.md beside this file).

Deterministic for a seed. A session is 40 exchanges (user message + assistant reply: 80 stored
turns). Personal and project facts are stated in the first 10 exchanges, questions about them
are asked in the last 6 (5 of them, one filler among them), and everything else is filler from
many topics, including distractors close to the facts (someone else's pet, another city, a
colleague's deadline ...).

Three phrasing sets: `A` (the tuning split), `B` (the first held-out split) and `C` (the second
held-out split, written after B had been used once to choose the recall defaults). Every fact
type has its own statements and questions in each set; the types in `HELD_OUT_TYPES` exist only
in `B` and `C`, those in `C_ONLY_TYPES` only in `C`, which also opens its questions differently.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

EXCHANGES = 40
FACTS_PER_SESSION = 5
FACT_WINDOW = 10  # facts are stated in exchanges 0..9
QUESTION_WINDOW = 6  # questions are asked in 5 of the last 6 exchanges


@dataclass(frozen=True)
class FactType:
    name: str
    values: tuple[str, ...]
    statements: dict[str, tuple[str, ...]]  # phrasing set -> templates with {v}
    questions: dict[str, tuple[str, ...]]  # paraphrased, mostly without the statement's words
    acks: tuple[str, ...]  # the assistant's reply to the statement
    distractors: tuple[str, ...]  # about someone or something else, {o} another value
    answer: str


def _ft(
    name: str,
    values: str,
    a_st: tuple[str, ...],
    b_st: tuple[str, ...],
    a_q: tuple[str, ...],
    b_q: tuple[str, ...],
    acks: tuple[str, ...],
    distractors: tuple[str, ...],
    answer: str,
) -> FactType:
    return FactType(
        name,
        tuple(v.strip() for v in values.split("|")),
        {"A": a_st, "B": b_st},
        {"A": a_q, "B": b_q},
        acks,
        distractors,
        answer,
    )


FACT_TYPES: list[FactType] = [
    _ft(
        "pet_name",
        "Biscuit|Pepper|Mochi|Juniper|Waffles|Ziggy|Nala|Clementine|Pretzel|Otis|Bramble|Tofu",
        (
            "We adopted a beagle named {v} last weekend and the house is chaos already.",
            "Our new puppy is called {v}, he's a little terrier mix from the shelter.",
            "I finally got a dog! Her name is {v}.",
        ),
        (
            "Say hi to {v}, the rescue greyhound who moved in with us on Saturday.",
            "The kids picked the name {v} for the puppy we brought home.",
            "Since {v} arrived from the animal shelter I've been walking twice a day.",
        ),
        (
            "What was my pup called again?",
            "Remind me what name we gave our new four-legged family member?",
            "What did I say my dog's name was?",
        ),
        (
            "Can you remind me what we named the animal we adopted?",
            "What's the name of our new furry housemate?",
            "I'm ordering an engraved tag for the collar. What should it say?",
        ),
        (
            "Congratulations on the new arrival! {v} is a lovely name. The first few weeks are "
            "all about routine: feed at the same times, keep walks short and predictable, and "
            "give {v} a quiet corner with a crate or a bed. Puppy classes are worth it for "
            "socialisation too, and they are as much training for you as for the dog.",
            "That's wonderful news. Rescue dogs often need a couple of weeks to decompress, so "
            "don't worry if {v} seems shy or restless at first. Keep things calm, reward the "
            "behaviour you want to see, and book a vet check-up early so you have a baseline.",
        ),
        (
            "My neighbour's cat {o} keeps sneaking into our garden and sleeping on the bench.",
            "My best friend just got a hamster called {o}, it's ridiculously tiny.",
            "My sister's dog {o} had surgery last week but she's recovering well.",
        ),
        "Your dog is called {v}.",
    ),
    _ft(
        "allergy",
        "peanuts|shellfish|sesame|kiwi|tree nuts|eggs|soy|mustard|celery|strawberries|lupin",
        (
            "Just so you know, I'm allergic to {v}, so keep that in mind for any recipes.",
            "I have a pretty serious allergy to {v}. I carry an EpiPen everywhere.",
            "Please never suggest dishes with {v}; I react badly to them.",
        ),
        (
            "Heads up: I can't have anything containing {v}, my doctor confirmed an allergy.",
            "I ended up in the ER once after eating {v}, so that's off the menu for me forever.",
            "My allergist told me to stay away from {v} completely.",
        ),
        (
            "Which ingredient do I need to avoid for health reasons?",
            "What food makes me ill again? I'm planning a dinner menu.",
            "Is there anything I told you I can't eat?",
        ),
        (
            "When I order takeaway, what should I warn the restaurant about?",
            "For the dinner party, which item must be left out because of me?",
            "What was the thing that is dangerous for me to swallow?",
        ),
        (
            "Thanks for telling me, I'll avoid {v} in anything I suggest. When eating out, "
            "mention the allergy explicitly, since cross-contamination in shared kitchens is "
            "the most common problem. Reading labels for 'may contain' warnings is a good habit.",
            "Noted. An allergy to {v} can be serious, so it's good that you carry emergency "
            "medication. I'll flag any recipe that normally includes it and suggest a "
            "substitute instead.",
        ),
        (
            "My coworker is lactose intolerant, so team lunches are always a negotiation.",
            "My son's classmate is allergic to {o}, so the whole class went {o}-free.",
            "My brother breaks out in a rash from {o}, poor guy.",
        ),
        "You told me you're allergic to {v}.",
    ),
    _ft(
        "moving_city",
        "Lisbon|Rotterdam|Denver|Osaka|Melbourne|Vancouver|Tallinn|Montreal|Edinburgh|Valencia"
        "|Austin|Wellington",
        (
            "Big news: we're moving to {v} in April!",
            "My partner got a job offer, so we're relocating to {v} this summer.",
            "We just signed a lease in {v}, the move is in six weeks.",
        ),
        (
            "We've decided to leave and start over in {v} next spring.",
            "The removal van is booked: in two months our new home will be in {v}.",
            "I accepted the transfer, which means packing everything up and heading to {v}.",
        ),
        (
            "Where did I say we're going to live next?",
            "Which city are we headed to?",
            "Remind me where our new place is?",
        ),
        (
            "What's our destination for the big relocation?",
            "Where will I be living a few months from now?",
            "Which place did I say we're settling down in?",
        ),
        (
            "Congratulations, that's a big step! {v} is a great choice. Start with the admin: "
            "register your new address, transfer utilities, and look into healthcare "
            "registration early. A moving checklist split by weeks makes the last month much "
            "less stressful.",
            "Exciting! Moving to {v} will be a big change. I'd visit a few neighbourhoods at "
            "different times of day before committing to anything long-term, and budget for a "
            "couple of months of overlapping costs.",
        ),
        (
            "My colleague just got back from a conference in {o} and won't stop talking about "
            "the food.",
            "My parents spent their honeymoon in {o}; they still have photos everywhere.",
            "A friend of mine moved to {o} last year and loves it.",
        ),
        "You're moving to {v}.",
    ),
    _ft(
        "project_deadline",
        "March 14|the 2nd of June|September 30|October 3|November 18|January 12|May 21|August 8"
        "|December 1|July 15|April 26|February 27",
        (
            "Our project has to ship by {v}, no extensions.",
            "The client wants our release live on {v}.",
            "Hard deadline for our app launch is {v}.",
        ),
        (
            "Management set {v} as the go-live date for our platform.",
            "Everything has to be feature-complete and deployed by {v}; that's what we promised.",
            "We committed to delivering version 2.0 of our product on {v}.",
        ),
        (
            "When is our launch due?",
            "By what date do we need to have everything done?",
            "What's the cut-off date for our product again?",
        ),
        (
            "How long do we have? When exactly does our thing have to be out?",
            "When are we supposed to go live?",
            "What date did our customer expect the finished work?",
        ),
        (
            "Got it, {v} it is. Working backwards: freeze features about two weeks before, "
            "leave a week for QA, and keep a buffer for deployment surprises. A short weekly "
            "risk review with the team keeps the date honest.",
            "Understood. With {v} as the target, I'd list the must-haves now and push "
            "everything else to a follow-up release.",
        ),
        (
            "The marketing team's campaign is due {o}, which is a separate headache.",
            "My friend has a thesis deadline on {o} and is panicking.",
            "Our tax return is due {o} this year.",
        ),
        "The deadline is {v}.",
    ),
    _ft(
        "database",
        "PostgreSQL|MySQL|MongoDB|DynamoDB|CockroachDB|SQLite|Cassandra|MariaDB|Oracle"
        "|SQL Server|ClickHouse|Neo4j",
        (
            "Our backend runs on {v}.",
            "We store everything in {v} at work.",
            "The service I maintain uses {v} as its main database.",
        ),
        (
            "All our customer records live in a {v} cluster.",
            "We picked {v} for persistence when we started the project three years ago.",
            "Our data layer is {v}, with a read replica for reporting.",
        ),
        (
            "Which datastore does our service use?",
            "What storage engine is behind our app?",
            "What DB did I say we're on?",
        ),
        (
            "Where does our application keep its information, technically?",
            "Which persistence technology did we choose?",
            "What kind of database server are we running in production?",
        ),
        (
            "{v} is a solid choice. For performance, check the slow query log and your "
            "indexes first; most problems come from missing indexes or N+1 queries in the "
            "application layer. Connection pooling matters a lot under load as well.",
            "Good to know you're on {v}. I'll tailor any query or schema advice to it.",
        ),
        (
            "A friend's startup just migrated off {o} and regrets it.",
            "At my previous job we used {o}, which was painful to operate.",
            "The analytics team runs {o} for their dashboards, but that's not our system.",
        ),
        "You're using {v}.",
    ),
    _ft(
        "manager",
        "Priya Natarajan|Daniel Okafor|Sofia Brandt|Marcus Lee|Helen Zhang|Tomasz Wójcik"
        "|Aisha Rahman|Robert Keane|Ingrid Solberg|Kenji Mori|Laura Bianchi|Mateo Ruiz",
        (
            "My manager is {v}, who is pretty hands-off.",
            "I report to {v} since the reorg.",
            "{v} became my boss last month.",
        ),
        (
            "My new line manager, {v}, wants weekly one-on-ones.",
            "The person who signs off my holidays and writes my review is {v}.",
            "I've had {v} as my team lead for about a year now.",
        ),
        (
            "Who do I report to?",
            "What's my supervisor's name again?",
            "Who's in charge of my team, did I tell you?",
        ),
        (
            "Who's directly above me in the org chart?",
            "Who should I ask about a raise, I mean who is my direct superior?",
            "What's the name of the person I work under?",
        ),
        (
            "Thanks, good to know {v} is your manager. For one-on-ones, bring a short agenda: "
            "progress, blockers, and one development topic. Most managers appreciate a brief "
            "written update before the meeting.",
            "Got it. A good relationship with {v} matters a lot; clarify expectations early "
            "and ask how they prefer to get updates.",
        ),
        (
            "My friend's boss, {o}, micromanages everything.",
            "{o} from finance keeps sending me spreadsheets.",
            "My partner's manager {o} just quit unexpectedly.",
        ),
        "Your manager is {v}.",
    ),
    _ft(
        "flight_number",
        "BA 287|LH 1423|UA 915|KL 1002|AF 1180|DL 44|QF 12|IB 3166|SK 1469|AC 849|EK 29|TP 1351",
        (
            "My flight is {v}, leaving Thursday morning.",
            "I'm booked on {v} to the conference.",
            "Just got my boarding pass: {v}, the gate closes at 7:40.",
        ),
        (
            "Travel is sorted: {v} departs at 6:15 on Friday.",
            "I'll be on {v} for the trip to see my parents.",
            "The airline confirmed my seat on {v}.",
        ),
        (
            "Which plane am I catching, what's the number?",
            "Can you remind me of my flight details?",
            "What was my booking for the trip again?",
        ),
        (
            "My ride needs the code of the plane I'm on. Which is it?",
            "What number should I look for on the departures board?",
            "What's my air travel reservation?",
        ),
        (
            "Noted: {v}. Check in online 24 hours ahead and keep an eye on the airline's app "
            "for gate changes. If it's an early departure, plan your transport to the airport "
            "the night before.",
            "Got it, {v}. If you're checking luggage, arrive two hours early, and for "
            "international legs double-check that your passport is valid for six more months.",
        ),
        (
            "My brother's flight, {o}, got cancelled yesterday.",
            "My colleague took {o} last week and it was delayed three hours.",
        ),
        "You're on {v}.",
    ),
    _ft(
        "offsite_budget",
        "$12,000|€8,500|£4,000|$25,000|€3,200|$60,000|£15,000|$1,800|€40,000|$7,500",
        (
            "We have a budget of {v} for the team offsite.",
            "Finance approved {v} for the whole offsite, travel included.",
            "The offsite can't cost more than {v}.",
        ),
        (
            "Our spending cap for the company retreat is {v}.",
            "I've been given {v} to organise the retreat, and not a cent more.",
            "The retreat money is {v} in total.",
        ),
        (
            "How much money can we spend on the team trip?",
            "What's the spending limit I mentioned for our get-together?",
            "How much cash did we get for the event?",
        ),
        (
            "What's the maximum we're allowed to pay for the company getaway?",
            "How much can I blow on the trip with my colleagues?",
            "What figure am I working with for the group event?",
        ),
        (
            "With {v} you can do a lot if you book early. Split it roughly into venue, travel, "
            "food and activities, and keep about ten percent as contingency.",
            "Good to know the limit is {v}. I'll keep my suggestions within that.",
        ),
        (
            "My friend's wedding budget is {o} and they're already over it.",
            "The marketing department got {o} for their conference booth.",
        ),
        "The budget is {v}.",
    ),
    _ft(
        "work_language",
        "Rust|Go|Kotlin|TypeScript|Elixir|Scala|C#|Ruby|Swift|Haskell|Java|Clojure",
        (
            "Our codebase is almost entirely {v}.",
            "We write all our services in {v}.",
            "I mostly code in {v} at my job.",
        ),
        (
            "Everything in our monorepo is {v}, apart from a few shell scripts.",
            "The team standardised on {v} two years ago.",
            "My day-to-day work is writing {v}.",
        ),
        (
            "Which programming language is our repo written in?",
            "What language do we use at work again?",
            "What's our team's main language?",
        ),
        (
            "What do my colleagues and I write our software in?",
            "Which tech did our team settle on for development?",
            "If I paste a snippet from work, what syntax will it be?",
        ),
        (
            "{v} is a good fit for that kind of work. I'll write my examples in {v} from now on.",
            "Nice. If the whole team is on {v}, a shared linter and formatter configuration "
            "saves a lot of review time.",
        ),
        (
            "My friend is learning {o} for fun on weekends.",
            "The mobile team uses {o}, but I never touch it.",
        ),
        "Your team writes {v}.",
    ),
    _ft(
        "partner_name",
        "Elena|James|Mei|Oliver|Fatima|Lucas|Hannah|Rafael|Anja|Samuel|Yuki|Chloe",
        (
            "My partner {v} works night shifts as a nurse.",
            "{v} and I have been married for eight years.",
            "My spouse is called {v}; we met at university.",
        ),
        (
            "My other half, {v}, is the better cook in our house.",
            "I'm planning a surprise for {v}, the person I'm married to.",
            "{v}, my partner, thinks I spend too much time on my laptop.",
        ),
        (
            "What's my spouse called?",
            "Who am I married to, name-wise?",
            "What did I say my partner's name was?",
        ),
        (
            "Remind me of my significant other's name?",
            "For the anniversary card, whose name should I write?",
            "What's the name of the person I share my life with?",
        ),
        (
            "That's lovely. {v} sounds like a great person to have at your side. If you ever "
            "want ideas for a date night or a gift, just ask.",
            "Thanks for telling me about {v}. Balancing schedules as a couple takes effort; a "
            "shared calendar and one fixed evening a week together helps a lot of people.",
        ),
        (
            "My friend {o} is getting married next month.",
            "My brother's girlfriend {o} is visiting us this weekend.",
            "{o} from my book club recommended a novel.",
        ),
        "Your partner is {v}.",
    ),
    _ft(
        "hometown",
        "Porto|Leeds|Bergen|Cork|Kraków|Adelaide|Halifax|Graz|Bilbao|Dundee|Tucson|Nagoya",
        (
            "I grew up in {v}.",
            "I'm originally from {v}; I moved away when I was eighteen.",
            "{v} is where I was born and raised.",
        ),
        (
            "My whole childhood happened in {v}.",
            "I still have the accent of {v}, where I spent my first eighteen years.",
            "Whenever I visit my parents I go back to {v}, the town where I was a kid.",
        ),
        (
            "Where did I spend my childhood?",
            "What's my hometown again?",
            "Which town are my roots in?",
        ),
        (
            "Where did I live as a child?",
            "What's the name of the place I come from?",
            "Which city shaped me when I was young?",
        ),
        (
            "{v}, nice! Hometowns shape a lot of who we are. Do you still go back often?",
            "Thanks for sharing. {v} has a character of its own; I can see why you mention it.",
        ),
        (
            "My grandmother was born in {o}.",
            "We spent a long weekend in {o} last year.",
            "My colleague grew up in {o} and recommends it to everyone.",
        ),
        "You grew up in {v}.",
    ),
    _ft(
        "weekly_sport",
        "tennis|badminton|five-a-side football|volleyball|squash|water polo|basketball"
        "|table tennis|ultimate frisbee|bouldering|rugby|field hockey",
        (
            "I play {v} every Tuesday evening.",
            "I joined a {v} club last month.",
            "My weekly exercise is {v} with some friends.",
        ),
        (
            "Wednesday nights are for {v}; I never miss it.",
            "I've been doing {v} competitively since college.",
            "My knees hurt after {v} last night, but it was worth it.",
        ),
        (
            "What sport do I do during the week?",
            "Which activity keeps me fit?",
            "What do I play regularly?",
        ),
        (
            "What's my regular physical hobby?",
            "Which game do I take part in each week?",
            "What athletic thing do I do with my friends?",
        ),
        (
            "{v} is great exercise. Warm up properly, especially your shoulders and knees, "
            "and don't skip the cool-down stretch. Good shoes make a bigger difference than "
            "most people expect.",
            "Nice! A regular slot for {v} is the best way to stay consistent.",
        ),
        (
            "My daughter started {o} lessons at school.",
            "My colleague is obsessed with {o}.",
        ),
        "You play {v}.",
    ),
    _ft(
        "diet",
        "vegan|vegetarian|pescatarian|keto|gluten-free|halal|kosher|low-FODMAP|paleo|dairy-free",
        (
            "I've been {v} for six years now.",
            "I follow a {v} diet.",
            "I eat {v} these days, so keep that in mind.",
        ),
        (
            "I switched to a {v} way of eating last January and feel great.",
            "Everything I cook at home is {v}.",
            "Since my health scare, my meals are strictly {v}.",
        ),
        (
            "What eating style do I follow?",
            "What kind of meals should you suggest for me?",
            "What did I say about what I eat?",
        ),
        (
            "Are there any food rules I live by?",
            "When you give me meal ideas, what constraint applies?",
            "How would you describe my nutrition habits?",
        ),
        (
            "Good to know, I'll keep every recipe {v}. Planning meals for the week and "
            "batch-cooking a couple of staples makes it much easier to stick to.",
            "Thanks, noted: {v}. I'll adapt suggestions accordingly.",
        ),
        (
            "My roommate went {o} for a month but gave up.",
            "My parents are trying a {o} diet and complaining about it.",
        ),
        "You eat {v}.",
    ),
    _ft(
        "employer",
        "Siemens|Shopify|Spotify|Ledgerly, a small fintech|the city council|Unilever|Atlassian"
        "|Maersk|the regional hospital|Zalando|Booking.com|Ocado",
        (
            "I work at {v} as a data engineer.",
            "My employer is {v}.",
            "I joined {v} two years ago.",
        ),
        (
            "I spend my weekdays at {v}, in the platform team.",
            "My paycheck comes from {v}.",
            "I've been with {v} since I finished my degree.",
        ),
        (
            "Where do I have my job?",
            "Which organisation pays my salary?",
            "What's the company I'm at, did I mention it?",
        ),
        (
            "What's the name of the firm that hired me?",
            "Which business am I on the staff of?",
            "Where am I employed?",
        ),
        (
            "Nice, {v} is a well-known place. If you ever want help with internal docs, "
            "emails or interview prep, I'm happy to help.",
            "Thanks, good context. Knowing you're at {v} helps me pitch examples at the right "
            "scale.",
        ),
        (
            "My cousin just got hired by {o}.",
            "I had an interview with {o} years ago but didn't get the job.",
        ),
        "You work at {v}.",
    ),
    _ft(
        "cloud_provider",
        "AWS|Google Cloud|Azure|Hetzner|DigitalOcean|Fly.io|OVH|Oracle Cloud|Linode|Vercel"
        "|Heroku|Scaleway",
        (
            "We deploy everything on {v}.",
            "Our infrastructure is hosted on {v}.",
            "All our servers run in {v}.",
        ),
        (
            "Production sits in {v}, staging too.",
            "Our monthly bill from {v} keeps growing.",
            "We moved our workloads to {v} last year.",
        ),
        (
            "Which hosting platform are we using?",
            "Where do our machines live?",
            "What cloud did I say we're on?",
        ),
        (
            "Who do we pay to run our production boxes?",
            "Which provider hosts our stack?",
            "Where are our apps deployed?",
        ),
        (
            "{v} works well for that. Tag every resource by team and environment from the "
            "start; it's the only way the cost reports stay readable.",
            "Got it, {v}. I'll keep infrastructure examples specific to it.",
        ),
        (
            "My old company used {o} and it was a mess.",
            "A friend's startup got free credits from {o}.",
        ),
        "You're on {v}.",
    ),
    _ft(
        "wedding_date",
        "June 14|September 6|May 3|August 23|October 11|July 19|April 5|December 20|June 28"
        "|September 27",
        (
            "Our wedding is on {v}!",
            "We're getting married on {v}.",
            "The big day is {v}, the venue is booked.",
        ),
        (
            "We finally set a date: we say 'I do' on {v}.",
            "Save the date: {v} is our ceremony.",
            "The invitations for our wedding on {v} went out yesterday.",
        ),
        (
            "When do we tie the knot?",
            "What date is the marriage ceremony?",
            "When did I say the celebration with my fiancé is?",
        ),
        (
            "When are we getting hitched?",
            "What's the date of our nuptials again?",
            "By when do I need my suit ready for my own wedding?",
        ),
        (
            "Congratulations! {v} is a lovely time of year. Send save-the-dates about six "
            "months ahead and lock in the photographer early; the good ones book up fast.",
            "How exciting! With {v} set, the next big items are the caterer and the guest list.",
        ),
        (
            "My cousin's wedding is on {o}, the same month.",
            "My best friend got married on {o} last year.",
        ),
        "Your wedding is on {v}.",
    ),
    _ft(
        "car",
        "a blue Skoda Octavia|a 2015 Honda Civic|a Tesla Model 3|a red Mazda MX-5|a Volvo XC60"
        "|a VW Golf|a Toyota Prius|a Subaru Outback|a Fiat 500|a Ford Ranger",
        (
            "I drive {v}.",
            "My car is {v}.",
            "I just bought {v}.",
        ),
        (
            "I commute in {v} every day.",
            "I picked up {v} from the dealership on Monday.",
            "Parked in front of my house: {v}, my pride and joy.",
        ),
        (
            "What vehicle do I own?",
            "What's my ride these days?",
            "Which model did I buy?",
        ),
        (
            "What kind of automobile is mine?",
            "The mechanic is asking about my wheels. What make and model are they?",
            "What do I get around in?",
        ),
        (
            "Nice, {v}! Keep up with the service intervals and check tyre pressure monthly; "
            "it's the cheapest way to save fuel and avoid surprises.",
            "Good choice. {v} has a solid reputation for reliability.",
        ),
        (
            "My dad still drives {o} from years ago.",
            "My neighbour bought {o} and keeps showing it off.",
        ),
        "You drive {v}.",
    ),
    _ft(
        "team_size",
        "4|7|9|12|15|23|30|6|11|18",
        (
            "My team has {v} engineers.",
            "There are {v} of us in the team.",
            "I manage {v} people.",
        ),
        (
            "Our squad is {v} developers strong.",
            "We're a group of {v} now after the last hire.",
            "Headcount in my team: {v}.",
        ),
        (
            "How many people are in my group?",
            "How big is the crew I work with?",
            "How many colleagues do I have on the team?",
        ),
        (
            "How many folks work alongside me?",
            "How large is my unit, in number of devs?",
            "How many developers did I say we have?",
        ),
        (
            "{v} is a good size. Beyond about eight people, splitting stand-ups by topic "
            "keeps them short, and written decisions matter more.",
            "Thanks, with {v} people you can still keep a single backlog.",
        ),
        (
            "My friend's team has {o} people and they're overwhelmed.",
            "The sales team grew to {o} this quarter.",
        ),
        "Your team has {v} people.",
    ),
    _ft(
        "kid_name",
        "Leo|Ava|Noah|Isla|Theo|Maya|Finn|Zoe|Arlo|Ruby|Milo|Iris",
        (
            "Our youngest, {v}, just started kindergarten.",
            "{v}, our eldest, turned seven yesterday.",
            "{v}, my youngest, has a cold this week.",
        ),
        (
            "My kid {v} wants to be an astronaut.",
            "I have to pick up {v}, my eldest, from school at three.",
            "{v} is my little one, and bedtime is a battle.",
        ),
        (
            "What's my child's name?",
            "What is my kid called?",
            "What did I say my little one's name was?",
        ),
        (
            "What's the name of my offspring?",
            "What's my boy's or girl's name, the one I mentioned?",
            "Whose name goes on the school lunchbox label?",
        ),
        (
            "{v} sounds like a sweet kid. Young children thrive on routine; a consistent "
            "bedtime ritual with a book and dim lights helps more than anything else.",
            "Aww, say hi to {v}! Let me know if you want activity ideas for the weekend.",
        ),
        (
            "My niece {o} is visiting this weekend.",
            "My friend's son {o} is in the same class.",
        ),
        "Your child is {v}.",
    ),
    _ft(
        "laptop",
        "a MacBook Pro M3|a ThinkPad X1 Carbon|a Dell XPS 13|a Framework 13|a Surface Laptop 5"
        "|an HP EliteBook|a MacBook Air M2|an ASUS Zenbook",
        (
            "My work laptop is {v}.",
            "I code on {v}.",
            "The company gave me {v}.",
        ),
        (
            "I do everything on {v} these days.",
            "IT just shipped me {v} as my new machine.",
            "I'm typing this on {v}.",
        ),
        (
            "What computer do I use for my job?",
            "What machine do I have?",
            "Which notebook did I get from my employer?",
        ),
        (
            "What hardware am I working on?",
            "What's my device for coding?",
            "What model is my portable computer?",
        ),
        (
            "{v} is a capable machine. Keep an eye on battery health and don't leave it "
            "charging at 100% all day if you can set a limit.",
            "Good to know you're on {v}; I'll keep shortcuts and tooling advice specific to it.",
        ),
        (
            "My sister just bought {o} for university.",
            "My colleague is using {o} and loves it.",
        ),
        "You use {v}.",
    ),
    # --- types that exist only in the held-out set (B) ---------------------------------------
    _ft(
        "mother_birthday",
        "March 3|July 21|November 9|January 30|August 14|May 18|October 25|February 11|June 6"
        "|December 12",
        (),
        (
            "My mum's birthday is {v}, and I always forget it.",
            "My mother turns sixty on {v}.",
            "We're throwing a party for my mom on {v}, her birthday.",
        ),
        (),
        (
            "When does my mother celebrate getting older?",
            "What date should I put in my calendar for mum's special day?",
            "When's my mum's big day?",
        ),
        (
            "Noted, {v}. Put a reminder a week before so you have time to get a present.",
            "Lovely! For a milestone like that, a photo book of family memories is a gift "
            "people treasure.",
        ),
        (
            "My father-in-law's birthday is {o}.",
            "My best friend celebrates on {o}.",
        ),
        "Your mother's birthday is {v}.",
    ),
    _ft(
        "instrument",
        "cello|ukulele|saxophone|violin|piano|drums|banjo|trumpet|bass guitar|flute",
        (),
        (
            "I've been learning the {v} for about a year.",
            "I take {v} lessons on Saturday mornings.",
            "My neighbours hate me since I started practising the {v}.",
        ),
        (),
        (
            "Which musical thing am I learning to play?",
            "What do my weekend music classes cover?",
            "What am I learning to play?",
        ),
        (
            "That's great! With the {v}, short daily practice beats one long session a week. "
            "Record yourself now and then; you'll hear progress you don't notice otherwise.",
            "Nice, the {v} is a rewarding instrument. A metronome is your best friend.",
        ),
        (
            "My nephew plays the {o} in the school band.",
            "My flatmate has a {o} but never plays it.",
        ),
        "You're learning the {v}.",
    ),
    _ft(
        "medication",
        "lisinopril|metformin|levothyroxine|atorvastatin|sertraline|amlodipine|omeprazole"
        "|montelukast",
        (),
        (
            "I take {v} every morning; my GP prescribed it.",
            "My doctor put me on {v} last year.",
            "I'm on a daily dose of {v}.",
        ),
        (),
        (
            "What medicine am I on?",
            "Which pills do I swallow each day?",
            "What's my regular prescription?",
        ),
        (
            "Thanks for telling me about {v}. Check with a pharmacist before combining it "
            "with over-the-counter remedies, and keep a list of your medication in your wallet.",
            "Noted. I'll keep {v} in mind if you ask about supplements or other medicines.",
        ),
        (
            "My dad was prescribed {o} after his check-up.",
            "My aunt swears by {o}, but I don't know much about it.",
        ),
        "You take {v}.",
    ),
    _ft(
        "street",
        "Maple Street|Rua das Flores|Oak Avenue|Kingsley Road|Baker Lane|Via Roma|Elm Court"
        "|Harbour Road",
        (),
        (
            "We live on {v}, near the bakery.",
            "Our flat is at number 12, {v}.",
            "Home for us is {v}, third floor.",
        ),
        (),
        (
            "What's my address?",
            "Which road is our home on?",
            "Where should the parcel be delivered to?",
        ),
        (
            "Thanks. {v} sounds like a nice spot, especially near a bakery!",
            "Noted, {v}. Handy if you want me to draft a letter or a change-of-address email.",
        ),
        (
            "My office is on {o}.",
            "My friend lives on {o}, just around the corner.",
        ),
        "You live on {v}.",
    ),
    _ft(
        "rent",
        "$1,850|€1,200|£1,450|$2,300|€950|$3,100|£980|€1,600",
        (),
        (
            "Our rent is {v} a month.",
            "We pay {v} monthly for the flat.",
            "The landlord charges us {v} every month.",
        ),
        (),
        (
            "How much do we pay for housing each month?",
            "What does our apartment cost us?",
            "What's the regular payment for the place we live in?",
        ),
        (
            "Thanks. With {v} a month, the usual guideline is to keep housing under about a "
            "third of take-home pay.",
            "Noted, {v}. That's useful for the budget spreadsheet we discussed.",
        ),
        (
            "My friend pays {o} for a tiny studio.",
            "Our old place was {o}, which seems cheap now.",
        ),
        "Your rent is {v} a month.",
    ),
    _ft(
        "language_learning",
        "Japanese|Portuguese|Korean|Italian|Dutch|Greek|Mandarin|Swedish|Turkish|Polish",
        (),
        (
            "I'm learning {v} on Duolingo.",
            "I started {v} classes at the community centre.",
            "I practise {v} for twenty minutes every night.",
        ),
        (),
        (
            "Which foreign tongue am I studying?",
            "What language am I trying to pick up?",
            "Which course did I sign up for, language-wise?",
        ),
        (
            "Great choice! For {v}, spaced repetition for vocabulary and a weekly "
            "conversation partner are the fastest way to progress.",
            "Nice! Watching shows in {v} with subtitles helps a lot once you have the basics.",
        ),
        (
            "My colleague speaks fluent {o}.",
            "My cousin is taking {o} at school.",
        ),
        "You're learning {v}.",
    ),
]

HELD_OUT_TYPES = frozenset(
    {"mother_birthday", "instrument", "medication", "street", "rent", "language_learning"}
)

# --- phrasing set C: a second held-out set, written after the first held-out run (see
# README.md), never used for tuning. New statements and questions for every type above, and
# four fact types of its own.
_C_PHRASINGS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "pet_name": (
        (
            "Our family grew by one paw-print: a spaniel called {v}.",
            "{v} the labrador chewed through my charger again this morning.",
            "Meet {v}, our border collie, who is smarter than all of us.",
        ),
        (
            "Which name does our four-legged one answer to?",
            "The vet's receptionist wants the patient's name. What is it?",
            "Who is the furry troublemaker at home, name-wise?",
        ),
    ),
    "allergy": (
        (
            "One thing about me: anything with {v} makes my throat swell up.",
            "Food rule for me: no {v}, ever. Anaphylaxis is not fun.",
            "My immune system has declared war on {v}.",
        ),
        (
            "What must never end up on my plate?",
            "Which ingredient would put me in the emergency room?",
            "What do I react badly to at the table?",
        ),
    ),
    "moving_city": (
        (
            "In a few months we'll be calling {v} home.",
            "Decision made: we're packing up for {v}.",
            "Our next chapter starts in {v}; the flat is already rented.",
        ),
        (
            "Where are we off to when we relocate?",
            "What will my new address's city be?",
            "Which place are we about to make home?",
        ),
    ),
    "project_deadline": (
        (
            "The release train leaves on {v}; we have to be on it.",
            "Our launch is locked for {v}, and the customer already announced it.",
            "Code freeze and launch both land on {v} for us.",
        ),
        (
            "What's the date we absolutely cannot miss at work?",
            "When does our product need to be out the door?",
            "How much runway do we have, date-wise?",
        ),
    ),
    "database": (
        (
            "Every table we have sits in {v}.",
            "We went with {v} as the system of record.",
            "Our app talks to a single {v} instance behind the API.",
        ),
        (
            "What engine holds our tables?",
            "Which system of record did we pick for the app?",
            "What do our queries run against?",
        ),
    ),
    "manager": (
        (
            "{v} is the one who signs my timesheets.",
            "My boss these days is {v}.",
            "The person I answer to at work is {v}.",
        ),
        (
            "Who approves my timesheets?",
            "Who sits above me at work?",
            "Who's my boss?",
        ),
    ),
    "flight_number": (
        (
            "Outbound I'm on {v}, window seat.",
            "I'll be flying {v} to Singapore next week.",
            "Seat 14C on {v}, boarding at dawn.",
        ),
        (
            "Which departure should I track on the app?",
            "What's the code of the plane I'm taking?",
            "Which flight was mine again?",
        ),
    ),
    "offsite_budget": (
        (
            "The pot for the team retreat is {v}, full stop.",
            "Leadership capped the team away-days at {v}.",
            "We can spend up to {v} on the team trip.",
        ),
        (
            "How big is the pot for the team away-days?",
            "What's our ceiling for the colleagues' trip?",
            "How much may the outing cost us?",
        ),
    ),
    "work_language": (
        (
            "At the office it's {v} all day, every day.",
            "Our services are written in {v}, top to bottom.",
            "The backend team ships {v} exclusively.",
        ),
        (
            "Which language does our backend use?",
            "What do we program in at the office?",
            "What's the main tongue of our codebase?",
        ),
    ),
    "partner_name": (
        (
            "My wife, {v}, says hi.",
            "{v} is my husband; we celebrate ten years in June.",
            "I'm cooking dinner for {v}, my fiancé, tonight.",
        ),
        (
            "Who is my better half?",
            "Whose name goes next to mine on the wedding anniversary cake?",
            "What's my partner's first name?",
        ),
    ),
    "hometown": (
        (
            "I'm a {v} native, through and through.",
            "My accent gives it away: {v} born and bred.",
            "The first eighteen years of my life were in {v}.",
        ),
        (
            "Where was I born?",
            "Which town do I originally hail from?",
            "Where did I grow up?",
        ),
    ),
    "weekly_sport": (
        (
            "Every Thursday I'm on the court for {v}.",
            "My weekends revolve around {v} with the local club.",
            "{v} twice a week keeps me sane.",
        ),
        (
            "Which sport am I into?",
            "What's my weekly exercise?",
            "What game do I play with my club?",
        ),
    ),
    "diet": (
        (
            "My plate is {v}, always.",
            "I keep to a {v} diet for health reasons.",
            "Cooking for me means cooking {v}.",
        ),
        (
            "What dietary restrictions do I have?",
            "Which kind of food do I stick to?",
            "When planning meals for me, what should they be?",
        ),
    ),
    "employer": (
        (
            "I'm on the payroll at {v}.",
            "I work for {v}, on the data side.",
            "My office badge says {v}.",
        ),
        (
            "Which company am I with?",
            "Whose payroll am I on?",
            "Where do I work?",
        ),
    ),
    "cloud_provider": (
        (
            "Every environment we have lives on {v}.",
            "Our compute is all rented from {v}.",
            "We run production in {v}.",
        ),
        (
            "Which cloud vendor runs our production?",
            "Whose data centres are we on?",
            "Where is our compute rented from?",
        ),
    ),
    "wedding_date": (
        (
            "We tie the knot on {v}!",
            "The ceremony is set for {v}.",
            "Mark {v}: that's when I get married.",
        ),
        (
            "What's the date of my wedding?",
            "When is the ceremony?",
            "When do I walk down the aisle?",
        ),
    ),
    "car": (
        (
            "My daily driver is {v}.",
            "I've been driving {v} for three years.",
            "The car in our garage is {v}.",
        ),
        (
            "What car do I have?",
            "What's in my garage?",
            "What do I drive?",
        ),
    ),
    "team_size": (
        (
            "We're {v} engineers in my group.",
            "My group counts {v} people.",
            "I lead a team of {v}.",
        ),
        (
            "How many engineers are in my group?",
            "What's the headcount of the team I lead?",
            "How many people do I work with directly?",
        ),
    ),
    "kid_name": (
        (
            "{v}, our little one, started school this week.",
            "My child {v} lost a first tooth yesterday.",
            "{v} is five and already bossing everyone around.",
        ),
        (
            "What's my child called?",
            "Which name did we give our little one?",
            "Who's the five-year-old in my house?",
        ),
    ),
    "laptop": (
        (
            "My daily machine is {v}.",
            "Work issued me {v}.",
            "Everything I build, I build on {v}.",
        ),
        (
            "Which laptop did work give me?",
            "What's my work computer?",
            "What machine do I build on?",
        ),
    ),
    "mother_birthday": (
        (
            "Mum was born on {v}.",
            "My mother celebrates on {v} every year.",
            "{v} is my mum's birthday, and I need a gift.",
        ),
        (
            "When is my mother's birthday?",
            "When should I call mum to wish her a happy birthday?",
            "What date is mum's birthday?",
        ),
    ),
    "instrument": (
        (
            "I practise the {v} every evening after dinner.",
            "My new hobby is the {v}.",
            "I'm finally getting lessons for the {v}.",
        ),
        (
            "Which instrument am I learning?",
            "What do I practise in the evenings?",
            "What's my musical hobby?",
        ),
    ),
    "medication": (
        (
            "My daily pill is {v}.",
            "I'm prescribed {v}.",
            "Every morning I take {v}.",
        ),
        (
            "Which medication do I take?",
            "What's my daily pill?",
            "What am I prescribed?",
        ),
    ),
    "street": (
        (
            "Our place is on {v}.",
            "You can find us at 4 {v}.",
            "We moved into a flat on {v}.",
        ),
        (
            "Which street do I live on?",
            "Where's my home?",
            "What's the street of our flat?",
        ),
    ),
    "rent": (
        (
            "The flat costs us {v} monthly.",
            "Rent-wise we're at {v}.",
            "Every month {v} goes to the landlord.",
        ),
        (
            "What's our monthly rent?",
            "How much goes to the landlord each month?",
            "What does the flat cost?",
        ),
    ),
    "language_learning": (
        (
            "I've started {v} lessons with an online tutor.",
            "My new challenge is {v}.",
            "I'm studying {v} for a trip next year.",
        ),
        (
            "Which language am I studying?",
            "What language am I learning for the trip?",
            "What's my new language challenge?",
        ),
    ),
}

FACT_TYPES += [
    _ft(
        "blood_type",
        "O negative|A positive|B negative|AB positive|O positive|A negative",
        (),
        (),
        (),
        (),
        (
            "Good to know: {v}. Carry it on a card in your wallet, it can save time in an "
            "emergency.",
            "Noted, {v}. Blood donation centres are always glad to hear from donors.",
        ),
        ("My brother is {o}, so we can't donate to each other.",),
        "Your blood type is {v}.",
    ),
    _ft(
        "gym",
        "PureGym|Anytime Fitness|the YMCA|Planet Fitness|a CrossFit box|the university gym",
        (),
        (),
        (),
        (),
        (
            "Nice, {v} has good hours. A fixed routine of three sessions a week is easy to keep.",
            "Good choice! Ask the staff at {v} for an induction if you haven't had one.",
        ),
        ("My colleague trains at {o} and loves the classes.",),
        "Your gym is {v}.",
    ),
    _ft(
        "neighbour",
        "Mrs Patel|Giorgos|old Mr Henderson|Astrid|the Nakamuras|Benoît",
        (),
        (),
        (),
        (),
        (
            "It's lovely to have a neighbour like {v}. Good neighbours make a place feel like "
            "home.",
            "Ha, {v} sounds like a character!",
        ),
        ("My friend's neighbour {o} throws loud parties.",),
        "Your neighbour is {v}.",
    ),
    _ft(
        "vacation",
        "Crete|Iceland|Kyoto|the Amalfi Coast|Patagonia|Vietnam",
        (),
        (),
        (),
        (),
        (
            "{v} is a wonderful choice! Book accommodation early and leave a free day in the "
            "plan for the weather.",
            "How exciting, {v}! I can help you plan an itinerary if you like.",
        ),
        ("My sister just came back from {o}.", "My boss is going to {o} next week."),
        "You're going to {v}.",
    ),
]
_C_ONLY: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "blood_type": (
        (
            "I'm {v}, according to the donor card.",
            "My blood group is {v}.",
            "The hospital form says I'm {v}.",
        ),
        (
            "What blood group am I?",
            "What did my donor card say about me?",
            "If I need a transfusion, what type do they need?",
        ),
    ),
    "gym": (
        (
            "I work out at {v} near the station.",
            "I've got a membership at {v}.",
            "Most mornings you'll find me lifting at {v}.",
        ),
        (
            "Where do I work out?",
            "Which gym am I a member of?",
            "Where do I lift in the mornings?",
        ),
    ),
    "neighbour": (
        (
            "Our next-door neighbour, {v}, waters our plants when we're away.",
            "{v} next door brought us soup when I was sick.",
            "The person living next door is {v}.",
        ),
        (
            "Who lives next door to me?",
            "Who waters our plants when we travel?",
            "What's the name of my neighbour?",
        ),
    ),
    "vacation": (
        (
            "Our summer holiday this year is two weeks in {v}.",
            "We booked our holiday: {v} in August.",
            "I'm counting the days until our trip to {v}.",
        ),
        (
            "Where are we going for the summer break?",
            "Where's our holiday this year?",
            "Which destination did we book for August?",
        ),
    ),
}
C_ONLY_TYPES = frozenset(_C_ONLY)
for _ft_ in FACT_TYPES:
    _st, _q = _C_PHRASINGS.get(_ft_.name) or _C_ONLY[_ft_.name]
    _ft_.statements["C"] = _st
    _ft_.questions["C"] = _q

# Filler: topics, each with user messages and the sentences its replies are drawn from (in
# order, so a reply reads as one answer).
FILLER_TOPICS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "python": (
        (
            "How do I read a CSV file in Python without pandas?",
            "What's the difference between a list and a tuple?",
            "Why does my for loop skip items when I remove them from the list?",
            "Can you explain what a decorator is with a simple example?",
        ),
        (
            "Good question.",
            "The standard library covers this well, so you don't need extra dependencies.",
            "The key idea is that you should not mutate a collection while iterating over it.",
            "A quick example makes it clearer: open the file with a context manager, then "
            "iterate over the reader object row by row.",
            "Tuples are immutable, which makes them hashable and usable as dictionary keys.",
            "Decorators are just functions that take a function and return a new one.",
            "If you need performance later, measure first with timeit before optimising.",
            "Type hints help here too, because your editor can catch mistakes early.",
            "Let me know if you want me to walk through a complete script.",
        ),
    ),
    "sql": (
        (
            "What's the difference between a LEFT JOIN and an INNER JOIN?",
            "How do window functions work?",
            "My query is slow, how do I figure out why?",
            "Should I use UUIDs or integers as primary keys?",
        ),
        (
            "This trips up a lot of people.",
            "An inner join keeps only rows that match on both sides, a left join keeps every "
            "row from the left table.",
            "Window functions compute a value over a set of rows related to the current row "
            "without collapsing them like GROUP BY does.",
            "Start with EXPLAIN ANALYZE and look for sequential scans on large tables.",
            "Integers are smaller and faster to index; UUIDs are easier to generate in "
            "distributed systems.",
            "Composite indexes help when you filter on several columns together.",
            "Watch out for functions applied to indexed columns in WHERE clauses.",
            "If you share the query and the table sizes I can be more specific.",
        ),
    ),
    "git": (
        (
            "How do I undo my last commit without losing the changes?",
            "What's the difference between merge and rebase?",
            "I accidentally committed a password, what do I do?",
            "How should we name our branches?",
        ),
        (
            "Git has a few ways to do this.",
            "git reset --soft HEAD~1 moves the branch back but keeps your changes staged.",
            "Rebase rewrites history to make it linear, merge preserves it as it happened.",
            "For a leaked secret, rotate the credential first; rewriting history comes second.",
            "A simple convention like feature/short-description works well for most teams.",
            "Never rebase branches that other people have already pulled.",
            "Protect your main branch and require reviews before merging.",
        ),
    ),
    "kubernetes": (
        (
            "Why does my pod keep restarting with CrashLoopBackOff?",
            "Do we really need Kubernetes for a small app?",
            "How do readiness and liveness probes differ?",
        ),
        (
            "Kubernetes is powerful but has a learning curve.",
            "CrashLoopBackOff means the container starts and exits repeatedly; kubectl logs "
            "with --previous shows what the last run printed.",
            "For a small app, a single VM or a managed container service is often simpler.",
            "Readiness decides whether a pod gets traffic, liveness decides whether it gets "
            "restarted.",
            "Set resource requests and limits, otherwise the scheduler is guessing.",
            "Keep your manifests in version control and apply them through CI.",
            "Helm charts help once you have several environments.",
        ),
    ),
    "cooking": (
        (
            "How do I make a simple tomato sauce from scratch?",
            "What's a good weeknight dinner that takes 20 minutes?",
            "Why does my bread come out so dense?",
            "How long should I rest a steak?",
            "Any tips for cooking rice that isn't sticky?",
        ),
        (
            "Happy to help in the kitchen.",
            "Start with olive oil and garlic over low heat, then add crushed tomatoes and a "
            "pinch of salt.",
            "A stir-fry with whatever vegetables you have and a quick soy-ginger sauce is hard "
            "to beat on a weeknight.",
            "Dense bread usually means under-proofing or too little kneading.",
            "Rest a steak for about five minutes so the juices redistribute.",
            "Rinse the rice until the water runs clear, then use a lid and don't stir.",
            "Taste as you go and adjust the seasoning at the end.",
            "A sharp knife makes everything faster and safer.",
        ),
    ),
    "fitness": (
        (
            "How often should I do strength training as a beginner?",
            "Is it better to run in the morning or the evening?",
            "How do I avoid getting sore knees when running?",
            "What's a good stretching routine after work?",
        ),
        (
            "Consistency matters more than the perfect plan.",
            "Two or three full-body sessions a week is plenty when you're starting out.",
            "The best time to run is the time you can stick to.",
            "Increase your weekly distance by no more than about ten percent.",
            "Strengthening your hips and glutes often helps with knee pain.",
            "Ten minutes of gentle stretching for hips, hamstrings and shoulders undoes a lot "
            "of sitting.",
            "Sleep and protein intake matter as much as the workouts themselves.",
            "If pain persists, see a physiotherapist rather than pushing through it.",
        ),
    ),
    "gardening": (
        (
            "My tomato plants have yellow leaves, what's wrong?",
            "When should I plant bulbs for spring?",
            "How do I start composting in a small garden?",
        ),
        (
            "Gardens are great teachers of patience.",
            "Yellow lower leaves often mean overwatering or a lack of nitrogen.",
            "Plant spring bulbs in autumn, before the ground freezes.",
            "A compost bin needs a mix of green material like peelings and brown material "
            "like dry leaves.",
            "Water deeply and less often so the roots grow down.",
            "Mulch keeps moisture in and weeds down.",
            "Check the underside of leaves for pests once a week.",
        ),
    ),
    "finance": (
        (
            "How much should I keep in an emergency fund?",
            "Is it better to pay off debt or invest?",
            "How do index funds work?",
            "Can you help me set up a simple monthly budget?",
        ),
        (
            "I can give general information, not personal financial advice.",
            "Three to six months of essential expenses is the usual guideline for an "
            "emergency fund.",
            "High-interest debt usually beats any expected investment return, so pay it first.",
            "Index funds track a market index, which keeps fees low and spreads risk.",
            "A simple budget splits income into needs, wants and savings.",
            "Automate transfers on payday so saving doesn't depend on willpower.",
            "Review subscriptions every few months; they add up quietly.",
        ),
    ),
    "books": (
        (
            "Can you recommend a good science fiction novel?",
            "I want to read more non-fiction, where should I start?",
            "What's a good book for a long train ride?",
        ),
        (
            "Book recommendations are my favourite kind of question.",
            "For science fiction, Ursula K. Le Guin's The Dispossessed is a thoughtful classic.",
            "For non-fiction, pick a topic you're already curious about; narrative history "
            "books are easy to get into.",
            "A long mystery novel is perfect for a train ride.",
            "Audiobooks are a good option if reading in motion makes you queasy.",
            "Your local library probably has an e-book app too.",
        ),
    ),
    "movies": (
        (
            "What's a good movie for a rainy Sunday?",
            "Can you suggest a documentary about the ocean?",
            "Are there any good animated films for adults?",
        ),
        (
            "Here are a few ideas.",
            "A long, cosy classic is perfect for a rainy Sunday.",
            "Nature documentaries about the deep sea are stunning on a big screen.",
            "Several studio animation films work on two levels, for kids and for adults.",
            "If you like slow cinema, try something from the 1970s.",
            "Check which streaming service has it before you get your hopes up.",
        ),
    ),
    "history": (
        (
            "Why did the Roman Empire fall?",
            "What caused the First World War?",
            "How did the printing press change Europe?",
        ),
        (
            "Historians still debate this.",
            "Most explanations combine economic strain, political instability and pressure "
            "on the borders.",
            "The assassination in Sarajevo was the trigger, but alliances and militarism "
            "made a wide war likely.",
            "The printing press made books cheaper, spread literacy and sped up the exchange "
            "of ideas.",
            "Single-cause explanations are almost always too simple.",
            "Primary sources from the period are fascinating if you want to go deeper.",
        ),
    ),
    "astronomy": (
        (
            "Why is the sky blue?",
            "When is the best time to see the Milky Way?",
            "How far away is the nearest star?",
        ),
        (
            "The sky is full of good questions.",
            "Sunlight scatters off air molecules, and blue light scatters the most.",
            "You need a moonless night far from city lights to see the Milky Way well.",
            "Proxima Centauri is about 4.2 light-years away.",
            "Binoculars are a great first instrument before buying a telescope.",
            "Apps that show the night sky make it easy to find constellations.",
        ),
    ),
    "email_writing": (
        (
            "Can you help me write a polite email declining a meeting?",
            "How do I follow up on an email that got no reply?",
            "How should I ask for feedback on my work?",
        ),
        (
            "Sure, here's an approach.",
            "Keep it short: thank them, decline clearly, and offer an alternative if you can.",
            "A friendly follow-up after a week is completely normal.",
            "Ask specific questions when requesting feedback, not just 'any thoughts?'.",
            "Put the request in the first two sentences so it isn't missed.",
            "Read it once out loud before sending; awkward phrasing jumps out.",
        ),
    ),
    "interviews": (
        (
            "How do I prepare for a behavioural interview?",
            "What questions should I ask at the end of an interview?",
            "How do I talk about a weakness without sounding fake?",
        ),
        (
            "Preparation makes a big difference.",
            "Use the STAR structure: situation, task, action, result.",
            "Ask about how success is measured in the role and what the team is working on.",
            "Pick a real weakness and explain what you're doing about it.",
            "Practise out loud; answers always sound different than they do in your head.",
            "Research the company's recent news so your questions are specific.",
        ),
    ),
    "home_repair": (
        (
            "How do I fix a dripping tap?",
            "What's the best way to patch a small hole in drywall?",
            "My door squeaks, what can I do?",
        ),
        (
            "Most small repairs are very doable yourself.",
            "A dripping tap usually needs a new washer or cartridge; turn off the water first.",
            "For a small hole, use spackle, let it dry, sand it smooth and paint over it.",
            "A squeaky hinge usually needs a bit of lubricant on the pin.",
            "Take photos before you disassemble anything so you know how it goes back.",
            "If anything involves gas or mains electricity, call a professional.",
        ),
    ),
    "photography": (
        (
            "How do I take better photos with my phone?",
            "What does aperture actually do?",
            "Any tips for photographing people indoors?",
        ),
        (
            "Light is everything in photography.",
            "Clean the lens, tap to focus, and use the grid to compose.",
            "Aperture controls how much light comes in and how much of the scene is sharp.",
            "Indoors, put your subject near a window and turn off mixed artificial lights.",
            "Shoot more than you think you need and pick the best later.",
            "Editing a little goes a long way; don't overdo saturation.",
        ),
    ),
    "sleep": (
        (
            "I keep waking up at 3am, any tips?",
            "How much sleep do adults really need?",
            "Is it bad to look at my phone before bed?",
        ),
        (
            "Sleep problems are really common.",
            "Most adults need around seven to nine hours.",
            "Keeping the same wake-up time every day is the strongest signal for your body clock.",
            "Bright screens late at night can delay sleep, so dim them or stop earlier.",
            "Caffeine after early afternoon affects many people more than they think.",
            "If it goes on for weeks, it's worth talking to a doctor.",
        ),
    ),
    "coffee": (
        (
            "How do I make better coffee at home?",
            "Is a French press or a pour-over better?",
            "Why does my espresso taste sour?",
        ),
        (
            "Coffee is a rabbit hole, in a good way.",
            "Fresh beans and a burr grinder make the biggest difference.",
            "A French press gives a fuller body, pour-over a cleaner cup.",
            "Sour espresso usually means under-extraction: grind finer or pull longer.",
            "Weigh your coffee and water; consistency comes from measuring.",
            "Store beans in an airtight container away from light.",
        ),
    ),
    "chess": (
        (
            "How do I get better at chess?",
            "What opening should a beginner learn?",
            "How do I stop blundering pieces?",
        ),
        (
            "Chess improvement is mostly about patterns.",
            "Solve a few tactics puzzles every day.",
            "The Italian Game is a friendly opening for beginners.",
            "Before every move, check what your opponent's last move threatens.",
            "Play longer time controls so you have time to think.",
            "Review your losses; they teach more than your wins.",
        ),
    ),
    "travel_tips": (
        (
            "What should I pack for a week-long trip with only hand luggage?",
            "How do I deal with jet lag?",
            "Is travel insurance worth it?",
        ),
        (
            "Travelling light is a skill worth learning.",
            "Pack clothes that all go together and plan to wash once.",
            "Get daylight at your destination's morning and avoid long naps on arrival.",
            "Travel insurance is worth it mostly for medical costs abroad and cancellations.",
            "Keep copies of your documents in your email.",
            "A small power bank and a universal adapter solve a lot of problems.",
        ),
    ),
    "productivity": (
        (
            "How do I stop procrastinating?",
            "What's a good way to organise my to-do list?",
            "I have too many meetings, what can I do?",
        ),
        (
            "Everyone struggles with this sometimes.",
            "Break the task into a first step small enough that it feels silly not to do it.",
            "Keep one list, and each morning pick the three things that matter most.",
            "Decline meetings without an agenda and suggest an async update instead.",
            "Block focus time in your calendar as if it were a meeting.",
            "Turning off notifications for an hour is surprisingly effective.",
        ),
    ),
    "climate": (
        (
            "What actually makes the biggest difference for my carbon footprint?",
            "Are heat pumps worth it?",
            "How do solar panels work?",
        ),
        (
            "Good question, and the answers are sometimes surprising.",
            "Flying, driving, heating and diet are the biggest levers for most households.",
            "Heat pumps move heat rather than generating it, which makes them very efficient.",
            "Solar panels turn light into electricity through the photovoltaic effect.",
            "Insulation is often the cheapest improvement per tonne of CO2 saved.",
            "Local subsidies can change the numbers a lot, so check what applies to you.",
        ),
    ),
    "parenting": (
        (
            "How do I get a toddler to eat vegetables?",
            "How much screen time is okay for young children?",
            "Any ideas for a rainy day with kids?",
        ),
        (
            "Parenting questions rarely have one right answer.",
            "Offer vegetables often without pressure; it can take many tries before they "
            "accept something new.",
            "Co-viewing and talking about what they watch matters more than exact minutes.",
            "A blanket fort, baking together or a treasure hunt can rescue a rainy day.",
            "Let them help in the kitchen; kids eat what they cooked.",
            "Be kind to yourself; no parent gets it right every day.",
        ),
    ),
    "music": (
        (
            "Can you explain what a chord progression is?",
            "Why do some songs sound sad?",
            "How do I find new music I'd like?",
        ),
        (
            "Music theory is more intuitive than it looks.",
            "A chord progression is the sequence of chords a song moves through.",
            "Minor keys and slower tempos are often heard as sad, though culture plays a role.",
            "Follow the artists your favourite musicians credit as influences.",
            "Radio shows and curated playlists are good for discovering new things.",
            "Listening closely to one album front to back is underrated.",
        ),
    ),
    "docker": (
        (
            "Why is my Docker image so big?",
            "How do I share data between containers?",
            "What's the difference between CMD and ENTRYPOINT?",
        ),
        (
            "Docker images grow quickly if you're not careful.",
            "Use multi-stage builds and a slim base image to cut the size.",
            "Named volumes are the usual way to share data between containers.",
            "ENTRYPOINT sets the executable, CMD provides default arguments.",
            "Order your Dockerfile so that rarely changing layers come first.",
            "A .dockerignore file keeps build contexts small.",
        ),
    ),
    "testing": (
        (
            "How many unit tests is enough?",
            "Should I mock the database in tests?",
            "Our tests are flaky, how do we fix that?",
        ),
        (
            "Testing is about confidence, not numbers.",
            "Test behaviour that matters and edges where bugs hide, not every line.",
            "Mocks are fine for units, but keep a few tests against a real database.",
            "Flaky tests usually come from timing, shared state or ordering assumptions.",
            "Quarantine a flaky test and fix it quickly; ignored flakiness spreads.",
            "Fast tests get run; slow ones get skipped.",
        ),
    ),
    "smalltalk": (
        (
            "Thanks, that was helpful!",
            "Okay, makes sense.",
            "Haha, fair enough.",
            "Let me think about that for a bit.",
            "Great, I'll try that tonight.",
        ),
        (
            "You're welcome!",
            "Glad it helped.",
            "Let me know how it goes.",
            "Any time.",
        ),
    ),
}

ELABORATIONS = (
    "It depends a little on your situation, so treat this as a starting point rather than a rule.",
    "Small, consistent steps usually beat one big effort.",
    "If you tell me more about your setup, I can make this more specific.",
    "A common mistake is trying to change everything at once; change one thing, then see "
    "what happened.",
    "Write down what you tried and what happened, because it makes the next decision easier.",
    "There are plenty of opinions online, but the fundamentals haven't changed much in years.",
    "Don't worry about getting it perfect on the first try.",
    "It also helps to ask someone who has done it before; ten minutes of their experience can "
    "save you hours.",
    "Give it a couple of weeks before you judge whether it works.",
    "The cheapest option is not always the best value over time.",
    "Keep it simple at first, and only add complexity when you actually need it.",
    "Most people find the second attempt much easier than the first.",
    "If something feels off, trust that instinct and double-check.",
    "Happy to go deeper on any of these points.",
    "That's the short version; the long version has a lot of caveats, but they rarely matter "
    "in practice.",
    "Set yourself a small reminder to revisit this in a month.",
)
DISTRACTOR_REPLIES = (
    "Ha, that sounds like quite a story.",
    "Oh nice, thanks for sharing.",
    "That's good to hear.",
    "Sounds like a lot going on!",
    "I hope it all works out.",
    "Interesting, I didn't expect that.",
)
ASIDES = ("Also, unrelated: ", "Oh, and by the way: ", "Side note: ", "Totally different topic. ")
SEGUES = ("Anyway. ", "But my actual question: ", "Okay, so: ")
QUESTION_PREFIXES_C = (
    "",
    "",
    "",
    "Hey, ",
    "Hmm, one more thing. ",
    "Before I forget: ",
    "My brain is fried today. ",
    "Help me out here. ",
)
QUESTION_PREFIXES = (
    "",
    "",
    "",
    "Quick question: ",
    "Sorry, my memory is terrible. ",
    "Going back to something from earlier. ",
    "I'm filling in a form. ",
    "Random one: ",
)


@dataclass
class Question:
    fact_type: str
    value: str
    statement: str  # the exact user turn that states the fact
    statement_index: int  # exchange index of the statement
    question: str  # the user message asking about it
    index: int  # exchange index of the question
    in_passing: bool  # the fact is an aside in a message about something else


@dataclass
class Session:
    id: str
    exchanges: list[tuple[str, str]] = field(default_factory=list)  # (user, assistant)
    questions: list[Question] = field(default_factory=list)


def _filler(rng: random.Random, used: set[str], chat: bool = True) -> tuple[str, str]:
    """A filler exchange whose user message was not used yet in the session (small talk may
    repeat; `chat` False: no small talk)."""
    while True:
        topic = rng.choice([t for t in FILLER_TOPICS if chat or t != "smalltalk"])
        asks, sentences = FILLER_TOPICS[topic]
        ask = rng.choice(asks)
        if topic == "smalltalk":
            return ask, " ".join(rng.sample(sentences, rng.randint(1, 2)))
        if ask not in used:
            break
    used.add(ask)
    n = rng.randint(2, len(sentences))
    picked = [sentences[i] for i in sorted(rng.sample(range(len(sentences)), n))]
    more = rng.sample(ELABORATIONS, rng.choice((0, 2, 3, 4, 6, 8)))
    if len(picked) > 3 and rng.random() < 0.4:  # a list, as assistants like to answer
        body = (
            picked[0] + " Here's what I'd keep in mind:\n" + "\n".join(f"- {p}" for p in picked[1:])
        )
        return ask, "\n\n".join(x for x in (body, " ".join(more)) if x)
    return ask, " ".join(picked + more)


def _other(rng: random.Random, ft: FactType, value: str) -> str:
    return rng.choice([v for v in ft.values if v != value])


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def generate(n_sessions: int, seed: int, phrasing: str) -> list[Session]:
    """`phrasing` A: the shared fact types with the tuning phrasings; B: the shared and the
    B-only fact types (2 of the 5 facts of a session) with the held-out phrasings; C: every
    fact type (the C-only ones 2 of 5) with the second held-out set's phrasings and question
    openers."""
    rng = random.Random(seed)
    if phrasing == "C":
        pool = FACT_TYPES
        own = [ft for ft in pool if ft.name in C_ONLY_TYPES]
    else:
        pool = [ft for ft in FACT_TYPES if ft.name not in C_ONLY_TYPES]
        own = [ft for ft in pool if ft.name in HELD_OUT_TYPES]
    shared = [ft for ft in pool if ft not in own]
    prefixes = QUESTION_PREFIXES_C if phrasing == "C" else QUESTION_PREFIXES
    sessions = []
    for s in range(n_sessions):
        if phrasing == "A":
            types = rng.sample(shared, FACTS_PER_SESSION)
        else:
            types = rng.sample(own, 2) + rng.sample(shared, FACTS_PER_SESSION - 2)
            rng.shuffle(types)
        slots: list[tuple[str, str] | None] = [None] * EXCHANGES
        fact_at = rng.sample(range(FACT_WINDOW), FACTS_PER_SESSION)
        ask_at = sorted(
            rng.sample(range(EXCHANGES - QUESTION_WINDOW, EXCHANGES), FACTS_PER_SESSION)
        )
        order = list(range(FACTS_PER_SESSION))
        rng.shuffle(order)
        session = Session(f"s{seed}-{s:03d}")
        used: set[str] = set()
        facts = []
        for ft, at in zip(types, fact_at, strict=True):
            value = rng.choice(ft.values)
            statement = _capital(rng.choice(ft.statements[phrasing]).format(v=value))
            ack = rng.choice(ft.acks).format(v=value)
            user, reply = statement, ack
            in_passing = rng.random() < 0.35
            if in_passing:  # said in passing, inside a message about something else
                ask, answer = _filler(rng, used, chat=False)
                if rng.random() < 0.5:
                    user = f"{ask} {rng.choice(ASIDES)}{statement}"
                else:
                    user = f"{statement} {rng.choice(SEGUES)}{ask}"
                reply = f"{answer} {ack}"
            slots[at] = (user, reply)
            facts.append((ft, value, user, at, in_passing))
        # Distractors close to the facts (someone else's), and about other fact types too.
        free = [i for i in range(EXCHANGES - QUESTION_WINDOW) if slots[i] is None]
        distractor_types = [ft for ft in types if rng.random() < 0.8]
        distractor_types += rng.sample([ft for ft in pool if ft not in types], 3)
        for ft in distractor_types:
            value = next(f[1] for f in facts if f[0] is ft) if ft in types else ""
            other = _other(rng, ft, value)
            text = _capital(rng.choice(ft.distractors).format(o=other))
            at = free.pop(rng.randrange(len(free)))
            reply = rng.choice(DISTRACTOR_REPLIES)
            if rng.random() < 0.5:
                _, more = _filler(rng, used)
                reply = f"{reply} {more}"
            slots[at] = (text, reply)
        for q_at, i in zip(ask_at, order, strict=True):
            ft, value, user, at, in_passing = facts[i]
            question = rng.choice(prefixes) + rng.choice(ft.questions[phrasing])
            answer = ft.answer.format(v=value) + " Let me know if you need anything else."
            slots[q_at] = (question, answer)
            session.questions.append(Question(ft.name, value, user, at, question, q_at, in_passing))
        for i in range(EXCHANGES):
            if slots[i] is None:
                slots[i] = _filler(rng, used)
        session.exchanges = [x for x in slots if x is not None]
        sessions.append(session)
    return sessions
