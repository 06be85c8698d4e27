"""What the bot recognises before searching: greetings, thanks, and requests for a human, in
English, French, German and Spanish; and the bot's own phrases in those languages.

Rules, not a model: they are exact where it matters (someone asking for a person must reach one,
whatever the FAQs say), instant, and easy for an organization to read. A greeting or a thanks is
only taken as such in a short message ("hi, my card is blocked" is a question about a card)."""

from __future__ import annotations

import re
from typing import Literal

SmallTalk = Literal["greeting", "thanks", "human"]
SHORT_MESSAGE_WORDS = 6

_GREETING = re.compile(
    r"^\W*(hi|hello|hey|hiya|good (morning|afternoon|evening)|greetings|bonjour|salut|bonsoir|hallo|"
    r"guten (morgen|tag|abend)|servus|hola|buen[oa]s (d[ií]as|tardes|noches))\b",
    re.IGNORECASE,
)
_THANKS = re.compile(
    r"\b(thanks?|thank you|thx|cheers|much appreciated|merci|danke|gracias|muchas gracias)\b", re.IGNORECASE
)
_HUMAN = re.compile(
    r"\b(talk|speak|chat|connect me|put me through|transfer me)\b.{0,40}\b(human|person|agent|someone|somebody|"
    r"representative|operator|advisor|adviser|staff)\b"
    r"|\b(real|live|human) (person|agent|human|being|support)\b"
    r"|\b(customer service|support team)\b.{0,20}\b(please|now)\b"
    r"|^\W*(agent|human|operator)\W*(please)?\W*$"
    r"|\b(parler|discuter)\b.{0,30}\b(humain|conseiller|agent|quelqu'un|personne)\b"
    r"|\b(mit einem|mit einer)\b.{0,30}\b(mensch(en)?|mitarbeiter(in)?|berater(in)?)\b"
    r"|\b(hablar|comunicarme)\b.{0,30}\b(humano|persona|agente|asesor)\b",
    re.IGNORECASE,
)

PHRASES: dict[str, dict[str, str]] = {
    "en": {
        "greeting": "Hello! Ask me anything about our products and services.",
        "thanks": "You're welcome! Is there anything else I can help with?",
        "human": "I've asked a member of our support team to get back to you about this.",
        "no_answer": "I couldn't find an answer to this, so I've passed your question to our support team: "
        "someone will get back to you.",
        "out_of_scope": "I can only help with questions about our products and services.",
        "more": "More:",
    },
    "fr": {
        "greeting": "Bonjour ! Posez-moi vos questions sur nos produits et services.",
        "thanks": "Avec plaisir ! Puis-je vous aider pour autre chose ?",
        "human": "J'ai demandé à un membre de notre équipe support de vous recontacter à ce sujet.",
        "no_answer": "Je n'ai pas trouvé de réponse : j'ai transmis votre question à notre équipe support, "
        "qui reviendra vers vous.",
        "out_of_scope": "Je ne peux répondre qu'aux questions sur nos produits et services.",
        "more": "En savoir plus :",
    },
    "de": {
        "greeting": "Hallo! Fragen Sie mich alles zu unseren Produkten und Dienstleistungen.",
        "thanks": "Gern geschehen! Kann ich sonst noch helfen?",
        "human": "Ich habe unser Support-Team gebeten, sich bei Ihnen dazu zu melden.",
        "no_answer": "Dazu habe ich keine Antwort gefunden. Ich habe Ihre Frage an unser Support-Team "
        "weitergegeben, das sich bei Ihnen meldet.",
        "out_of_scope": "Ich kann nur Fragen zu unseren Produkten und Dienstleistungen beantworten.",
        "more": "Mehr dazu:",
    },
    "es": {
        "greeting": "¡Hola! Pregúnteme lo que quiera sobre nuestros productos y servicios.",
        "thanks": "¡De nada! ¿Puedo ayudarle en algo más?",
        "human": "He pedido a un miembro de nuestro equipo de soporte que se ponga en contacto con usted.",
        "no_answer": "No he encontrado una respuesta, así que he pasado su pregunta a nuestro equipo de soporte, "
        "que se pondrá en contacto con usted.",
        "out_of_scope": "Solo puedo ayudar con preguntas sobre nuestros productos y servicios.",
        "more": "Más información:",
    },
}


def phrase(key: str, language: str | None) -> str:
    """The bot's phrase in the user's language (its primary subtag), else English."""
    primary = (language or "en").split("-")[0].lower()
    return PHRASES.get(primary, PHRASES["en"])[key]


def detect(text: str) -> SmallTalk | None:
    if _HUMAN.search(text):
        return "human"
    if len(text.split()) > SHORT_MESSAGE_WORDS:
        return None
    if _THANKS.search(text):
        return "thanks"
    if _GREETING.search(text):
        return "greeting"
    return None
